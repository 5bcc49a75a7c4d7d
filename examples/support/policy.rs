//! The examples' `POLICY` names, in one place for hello and workload: the core's policies
//! (`herd::Policy::from_name`) and herd-rr's hand-off dispatchers.

use herd::{Cluster, Policy};

/// Every name `POLICY` takes.
pub const NAMES: &[&str] = &[
    "reuseport",
    "shared",
    "pinned",
    "pinned-incoming-cpu",
    "pinned-cbpf",
    "rr",
    "rr-least",
    "rr-sticky",
];

/// `cluster` with the policy called `name`, or a sentence listing the valid names.
pub fn apply(cluster: Cluster, name: &str) -> Result<Cluster, String> {
    if let Some(rr) = herd_rr::RoundRobin::from_name(name) {
        return Ok(cluster.dispatch(rr));
    }
    match Policy::from_name(name) {
        Some(policy) => Ok(cluster.policy(policy)),
        None => Err(format!(
            "POLICY={name} is not a policy: use one of {}",
            NAMES.join(", ")
        )),
    }
}
