//! Reading the examples' settings (`PORT`, `WORKERS`, ...) from the environment.

/// `name` parsed from the environment, or `default` when unset; a one-line error when set
/// but not a number.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> Result<T, String> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .map_err(|_| format!("{name}={v} is not valid: give a number")),
        Err(_) => Ok(default),
    }
}

/// `WORKERS`, or the CPUs this process may use when unset.
pub fn workers() -> Result<usize, String> {
    env_or(
        "WORKERS",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    )
}
