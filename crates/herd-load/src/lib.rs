//! herd-load (placeholder)
