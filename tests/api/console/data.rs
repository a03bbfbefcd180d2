//! Console tests: data (being written).
