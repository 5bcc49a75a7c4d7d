//! herd-rr (placeholder)
