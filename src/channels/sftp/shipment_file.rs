//! (built by its lane)
