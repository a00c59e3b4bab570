//! Stage letters `a`..`e`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::TrackerError;

/// One of the five pipeline stages. Each stage's output is the next stage's input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StageId {
    /// Stage `a`, the first; it receives the jobs loaded by `init`.
    A,
    /// Stage `b`.
    B,
    /// Stage `c`.
    C,
    /// Stage `d`.
    D,
    /// Stage `e`, the last possible stage.
    E,
}

impl StageId {
    /// All stages in pipeline order.
    pub const ALL: [StageId; 5] = [Self::A, Self::B, Self::C, Self::D, Self::E];

    /// The lowercase letter used on the wire and in the database.
    pub fn letter(self) -> &'static str {
        match self {
            Self::A => "a",
            Self::B => "b",
            Self::C => "c",
            Self::D => "d",
            Self::E => "e",
        }
    }

    /// Position in the pipeline, 0 for `a`.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The stage after this one, if any.
    pub fn next(self) -> Option<Self> {
        Self::ALL.get(self.index() + 1).copied()
    }

    /// The stage before this one, if any.
    pub fn previous(self) -> Option<Self> {
        self.index().checked_sub(1).map(|i| Self::ALL[i])
    }
}

impl fmt::Display for StageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.letter())
    }
}

impl FromStr for StageId {
    type Err = TrackerError;

    /// Accepts exactly one lowercase letter `a`..`e`, as the wire protocol does.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "a" => Ok(Self::A),
            "b" => Ok(Self::B),
            "c" => Ok(Self::C),
            "d" => Ok(Self::D),
            "e" => Ok(Self::E),
            other => Err(TrackerError::InvalidStage(other.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_only_lowercase_letters() {
        assert_eq!("c".parse::<StageId>().unwrap(), StageId::C);
        for bad in ["A", "f", "", "ab", " a"] {
            assert!(bad.parse::<StageId>().is_err(), "{bad:?} must be rejected");
        }
    }

    #[test]
    fn neighbours() {
        assert_eq!(StageId::A.previous(), None);
        assert_eq!(StageId::A.next(), Some(StageId::B));
        assert_eq!(StageId::E.next(), None);
        assert_eq!(StageId::E.previous(), Some(StageId::D));
    }
}
