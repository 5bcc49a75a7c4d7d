//! Why a worker left: the label of `herd_restarts_total` and of `herd status`'s restart
//! columns. One place, so the supervisor's own reasons can replace the inference below.

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
    /// The cluster stopped.
    Stop,
}

impl RestartReason {
    /// Every reason, in label order.
    pub const ALL: [RestartReason; 5] = [
        RestartReason::Crash,
        RestartReason::Reload,
        RestartReason::Scale,
        RestartReason::Kill,
        RestartReason::Stop,
    ];

    /// The label: `crash`, `reload`, `scale`, `kill`, `stop`.
    pub fn as_str(self) -> &'static str {
        match self {
            RestartReason::Crash => "crash",
            RestartReason::Reload => "reload",
            RestartReason::Scale => "scale",
            RestartReason::Kill => "kill",
            RestartReason::Stop => "stop",
        }
    }

    /// What a worker's exit means, from what the primary knew when it exited: whether it
    /// had been asked to leave, whether the cluster was stopping, whether its slot was being
    /// removed, and whether another worker had already taken its slot (a reload).
    pub(crate) fn infer(asked: bool, stopping: bool, removing: bool, replaced: bool) -> Self {
        match () {
            _ if !asked => RestartReason::Crash,
            _ if stopping => RestartReason::Stop,
            _ if removing => RestartReason::Scale,
            _ if replaced => RestartReason::Reload,
            _ => RestartReason::Kill,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::RestartReason::{self, *};

    #[test]
    fn reasons_by_circumstance() {
        let table = [
            ((false, false, false, false), Crash),
            ((false, true, true, true), Crash),
            ((true, true, false, false), Stop),
            ((true, false, true, false), Scale),
            ((true, false, false, true), Reload),
            ((true, false, false, false), Kill),
        ];
        for ((a, s, r, p), want) in table {
            assert_eq!(RestartReason::infer(a, s, r, p), want, "{a} {s} {r} {p}");
        }
    }
}
