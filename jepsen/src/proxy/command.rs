//! The proxy's control commands and the settings they change: one line per command, parsed by
//! [`Command::parse`] (the list is in the [module docs](super)).

use serde::Serialize;

/// A delay added to forwarded bytes: `ms` plus uniform `0..=jitter_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Delay {
    pub ms: u64,
    pub jitter_ms: u64,
}

/// What happens to a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Admit {
    /// Forwarded to the peer.
    #[default]
    Open,
    /// Reset at once.
    Refuse,
    /// Accepted and held; nothing reaches the peer, nothing comes back.
    Blackhole,
}

/// Which way of a connection a latency applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// From the connecting node to its peer.
    Up,
    /// From the peer back to the connecting node.
    Down,
    Both,
}

/// The proxy's current behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Settings {
    pub up: Delay,
    pub down: Delay,
    pub admit: Admit,
}

impl Settings {
    pub(super) fn delay(&self, direction: Direction) -> Delay {
        match direction {
            Direction::Down => self.down,
            Direction::Up | Direction::Both => self.up,
        }
    }
}

/// One control command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Latency { direction: Direction, delay: Delay },
    Drop,
    Admit { admit: Admit, for_s: Option<u64> },
    Clean,
    Status,
}

/// Upper bound of a latency or jitter, and of a timed refuse/blackhole.
const MAX_MS: u64 = 60_000;

/// Why a control line is not a command; the control port answers `error <this>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("'{word}' is not a number in 0..={max}")]
    NotANumber { word: String, max: u64 },
    #[error("direction '{word}' is not up, down or both")]
    NotADirection { word: String },
    #[error(
        "unknown command '{line}' (latency up|down|both MS JITTER_MS, drop, refuse [S], blackhole [S], clean, status)"
    )]
    Unknown { line: String },
}

impl Command {
    pub fn parse(line: &str) -> Result<Command, CommandError> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let number = |w: &str, max: u64| -> Result<u64, CommandError> {
            w.parse::<u64>()
                .ok()
                .filter(|n| *n <= max)
                .ok_or_else(|| CommandError::NotANumber {
                    word: w.to_string(),
                    max,
                })
        };
        match words.as_slice() {
            ["latency", direction, ms, jitter_ms] => {
                let direction = match *direction {
                    "up" => Direction::Up,
                    "down" => Direction::Down,
                    "both" => Direction::Both,
                    other => {
                        return Err(CommandError::NotADirection {
                            word: other.to_string(),
                        })
                    }
                };
                let delay = Delay {
                    ms: number(ms, MAX_MS)?,
                    jitter_ms: number(jitter_ms, MAX_MS)?,
                };
                Ok(Command::Latency { direction, delay })
            }
            ["drop"] => Ok(Command::Drop),
            [mode @ ("refuse" | "blackhole"), rest @ ..] if rest.len() <= 1 => Ok(Command::Admit {
                admit: if *mode == "refuse" {
                    Admit::Refuse
                } else {
                    Admit::Blackhole
                },
                for_s: rest.first().map(|s| number(s, MAX_MS / 1000)).transpose()?,
            }),
            ["clean"] => Ok(Command::Clean),
            ["status"] => Ok(Command::Status),
            _ => Err(CommandError::Unknown {
                line: line.trim().to_string(),
            }),
        }
    }
}
