//! Console tests: requests (being written).
