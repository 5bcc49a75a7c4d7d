//! (placeholder until the loop lands)
pub mod hooks;
pub use hooks::{Hooks, Inbound, Standalone};
