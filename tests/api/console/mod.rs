//! The support console (issue 12): pages read as HTML over loopback HTTP with a cookie-keeping
//! client, on both backends, and journeys in a real headless Chromium.

pub mod harness;

mod auth;
mod browser;
mod channels;
mod data;
mod files;
mod orders;
mod requests;
