//! Console tests: orders (being written).
