//! `dovetail user hash`: reads a password (without echo on a terminal, asked twice; otherwise one
//! line of stdin) and prints its `{SCHEME}hash` field, ready to paste into a passwd-file.

use std::io::{BufRead, IsTerminal, Write};

use super::scheme::{hash_password, Cost, Scheme};
use super::UsersError;

#[derive(Debug, clap::Args)]
pub struct UserArgs {
    #[command(subcommand)]
    pub command: UserCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum UserCommand {
    /// Print a `{SCHEME}hash` for a password read from stdin (no echo on a terminal).
    Hash {
        #[arg(long, value_enum, default_value_t = Scheme::Argon2id)]
        scheme: Scheme,
    },
}

/// Runs `dovetail user ...`; returns the exit code.
pub fn run(args: UserArgs) -> anyhow::Result<i32> {
    match args.command {
        UserCommand::Hash { scheme } => {
            let password = read_password()?;
            println!("{}", hash_field(password.as_bytes(), Cost::default_for(scheme))?);
            Ok(0)
        }
    }
}

/// The passwd-file field for `password` at `cost`.
pub fn hash_field(password: &[u8], cost: Cost) -> Result<String, UsersError> {
    hash_password(password, cost)
        .map(|hash| hash.to_field())
        .map_err(|reason| UsersError::Hash { reason })
}

fn read_password() -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    let password = if stdin.is_terminal() {
        let first = prompt_without_echo("Password: ")?;
        let again = prompt_without_echo("Again: ")?;
        anyhow::ensure!(first == again, "the passwords differ");
        first
    } else {
        read_line(&mut stdin.lock())?
    };
    anyhow::ensure!(!password.is_empty(), "empty password");
    Ok(password)
}

/// One line, without its `\n` or `\r\n`.
fn read_line(input: &mut impl BufRead) -> anyhow::Result<String> {
    let mut line = String::new();
    input.read_line(&mut line)?;
    let trimmed = line.strip_suffix('\n').unwrap_or(&line);
    Ok(trimmed.strip_suffix('\r').unwrap_or(trimmed).to_string())
}

/// Prompts on stderr and reads a line from the terminal on stdin with echo off, restoring the
/// terminal's settings afterwards (also when reading fails).
fn prompt_without_echo(prompt: &str) -> anyhow::Result<String> {
    eprint!("{prompt}");
    std::io::stderr().flush()?;
    // SAFETY: tcgetattr/tcsetattr on fd 0 with a zeroed termios they fill or read.
    let mut saved: libc::termios = unsafe { std::mem::zeroed() };
    anyhow::ensure!(
        unsafe { libc::tcgetattr(0, &mut saved) } == 0,
        "cannot read the terminal's settings"
    );
    let mut quiet = saved;
    quiet.c_lflag &= !libc::ECHO;
    quiet.c_lflag |= libc::ECHONL;
    // SAFETY: as above.
    anyhow::ensure!(
        unsafe { libc::tcsetattr(0, libc::TCSANOW, &quiet) } == 0,
        "cannot turn echo off"
    );
    let line = read_line(&mut std::io::stdin().lock());
    // SAFETY: as above; restores what tcgetattr read.
    unsafe { libc::tcsetattr(0, libc::TCSANOW, &saved) };
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_line_drops_the_line_end_only() {
        let mut input = std::io::Cursor::new(b" pass word \r\nsecond\n".to_vec());
        assert_eq!(read_line(&mut input).unwrap(), " pass word ");
        let mut input = std::io::Cursor::new(b"no newline".to_vec());
        assert_eq!(read_line(&mut input).unwrap(), "no newline");
    }
}
