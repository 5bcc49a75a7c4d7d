//! Why a worker left: the label of `herd_restarts_total` and of `herd status`'s restart
//! columns, from the supervisor's [`Cause`].

use crate::primary::Cause;

/// Why a worker process ended (and, unless the cluster stops or the slot goes, was
/// replaced).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RestartReason {
    /// It exited or was killed without being asked (a crash, an OOM kill, `kill -9`).
    Crash,
    /// A rolling reload replaced it.
    Reload,
    /// A scale-down removed its slot.
    Scale,
    /// Someone asked through a handle or the control socket (`herd kill`, `disconnect`).
    Kill,
    /// The watchdog found it hung (its loop stopped turning, or it never became ready).
    Hang,
    /// It reached a recycling limit (requests, lifetime, memory).
    Recycle,
    /// The cluster stopped.
    Stop,
}

impl RestartReason {
    /// Every reason, in label order.
    pub const ALL: [RestartReason; 7] = [
        RestartReason::Crash,
        RestartReason::Reload,
        RestartReason::Scale,
        RestartReason::Kill,
        RestartReason::Hang,
        RestartReason::Recycle,
        RestartReason::Stop,
    ];

    /// The label: `crash`, `reload`, `scale`, `kill`, `hang`, `recycle`, `stop`.
    pub fn as_str(self) -> &'static str {
        match self {
            RestartReason::Crash => "crash",
            RestartReason::Reload => "reload",
            RestartReason::Scale => "scale",
            RestartReason::Kill => "kill",
            RestartReason::Hang => "hang",
            RestartReason::Recycle => "recycle",
            RestartReason::Stop => "stop",
        }
    }
}

impl From<Cause> for RestartReason {
    fn from(c: Cause) -> RestartReason {
        match c {
            Cause::Crash => RestartReason::Crash,
            Cause::Hang => RestartReason::Hang,
            Cause::Recycle => RestartReason::Recycle,
            Cause::Reload => RestartReason::Reload,
            Cause::Scale => RestartReason::Scale,
            Cause::Stop => RestartReason::Stop,
            Cause::User => RestartReason::Kill,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cause_has_its_reason_and_the_labels_follow_the_order() {
        let table = [
            (Cause::Crash, "crash"),
            (Cause::Hang, "hang"),
            (Cause::Recycle, "recycle"),
            (Cause::Reload, "reload"),
            (Cause::Scale, "scale"),
            (Cause::Stop, "stop"),
            (Cause::User, "kill"),
        ];
        for (cause, label) in table {
            assert_eq!(RestartReason::from(cause).as_str(), label, "{cause:?}");
        }
        for (i, r) in RestartReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i, "ALL is in declaration order: {r:?}");
        }
    }
}
