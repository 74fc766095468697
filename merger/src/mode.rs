//! Merge modes: the names Zuul's `merge-mode` project attribute accepts, their parsing and
//! serde form (the Zuul spelling, e.g. `"merge-resolve"`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::errors::MergeError;

/// How a change is put onto its branch (Zuul's `merge-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MergeMode {
    /// `git merge FETCH_HEAD`: fast-forward when possible, else a two-parent merge commit.
    Merge,
    /// `git merge -s resolve FETCH_HEAD`: like `merge`, but with a single merge base and no
    /// rename detection.
    MergeResolve,
    /// Cherry-pick the change's commits onto the branch (a merge-commit tip is merged with
    /// `resolve` instead, as Zuul does).
    CherryPick,
    /// `git merge --squash` and one commit `Merge '<ref>'` with the combined content.
    SquashMerge,
    /// Rebase the change's commits onto the branch tip, then move the branch there.
    Rebase,
    /// Like `rebase`, but follows the change's first-parent chain and keeps merge commits,
    /// replaying each relative to its first parent.
    RebaseFirstParent,
    /// `git merge -s recursive FETCH_HEAD` (same algorithm as `merge` here).
    MergeRecursive,
    /// `git merge -s ort FETCH_HEAD` (same algorithm as `merge` here).
    MergeOrt,
}

impl MergeMode {
    /// Every mode, in declaration order.
    pub const ALL: [MergeMode; 8] = [
        MergeMode::Merge,
        MergeMode::MergeResolve,
        MergeMode::CherryPick,
        MergeMode::SquashMerge,
        MergeMode::Rebase,
        MergeMode::RebaseFirstParent,
        MergeMode::MergeRecursive,
        MergeMode::MergeOrt,
    ];

    /// Zuul's name for the mode.
    pub fn as_str(self) -> &'static str {
        match self {
            MergeMode::Merge => "merge",
            MergeMode::MergeResolve => "merge-resolve",
            MergeMode::CherryPick => "cherry-pick",
            MergeMode::SquashMerge => "squash-merge",
            MergeMode::Rebase => "rebase",
            MergeMode::RebaseFirstParent => "rebase-first-parent",
            MergeMode::MergeRecursive => "merge-recursive",
            MergeMode::MergeOrt => "merge-ort",
        }
    }
}

impl fmt::Display for MergeMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MergeMode {
    type Err = MergeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MergeMode::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| MergeError::UnknownMergeMode(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_str_and_serde() {
        for mode in MergeMode::ALL {
            assert_eq!(mode.as_str().parse::<MergeMode>().ok(), Some(mode));
            let json = serde_json::to_string(&mode).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", mode.as_str()));
            let back: Option<MergeMode> = serde_json::from_str(&json).ok();
            assert_eq!(back, Some(mode));
        }
        assert_eq!(
            "squash-merge".parse::<MergeMode>().ok(),
            Some(MergeMode::SquashMerge)
        );
        assert_eq!(
            "rebase-first-parent".parse::<MergeMode>().ok(),
            Some(MergeMode::RebaseFirstParent)
        );
    }

    #[test]
    fn unknown_name_is_an_error() {
        let err = "fast-forward".parse::<MergeMode>();
        assert!(matches!(err, Err(MergeError::UnknownMergeMode(ref s)) if s == "fast-forward"));
    }
}
