//! Console tests: browser (being written).
