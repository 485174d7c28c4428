//! gflags-style argv → what clap understands, before clap sees it.
//!
//! Caffe's tools parse flags with gflags, where `-solver x`, `-solver=x`,
//! `--solver x` and `--solver=x` are the same, a boolean flag may be written
//! `--flag`, `--flag=true`, `--flag=false` or `--noflag`, and flags may come
//! before the command word (`caffe -gpu all train ...`). Users' scripts are
//! full of these spellings, so they must keep working.
use std::collections::HashSet;
use std::ffi::OsString;

/// What the normaliser needs to know about the flags (from clap's
/// `Command`, see [`FlagKinds::from_command`]).
#[derive(Debug, Default, Clone)]
pub struct FlagKinds {
    /// Long names of flags that take a value (`--solver x`).
    pub valued: HashSet<String>,
    /// Long names of boolean switches (`--flag`, `--flag=false`, `--noflag`).
    pub booleans: HashSet<String>,
    /// Subcommand names, moved to the front when flags precede them.
    pub subcommands: HashSet<String>,
}

impl FlagKinds {
    /// Collect the long flags of a clap command and all its subcommands.
    pub fn from_command(cmd: &clap::Command) -> Self {
        let mut k = FlagKinds::default();
        k.collect(cmd);
        k
    }

    fn collect(&mut self, cmd: &clap::Command) {
        for arg in cmd.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if arg.get_action().takes_values() {
                self.valued.insert(long.to_string());
            } else if matches!(
                arg.get_action(),
                clap::ArgAction::SetTrue | clap::ArgAction::SetFalse
            ) {
                self.booleans.insert(long.to_string());
            }
        }
        for sub in cmd.get_subcommands() {
            self.subcommands.insert(sub.get_name().to_string());
            self.collect(sub);
        }
    }
}

/// gflags' spellings of true and false.
fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "t" | "yes" | "y" | "1" => Some(true),
        "false" | "f" | "no" | "n" | "0" => Some(false),
        _ => None,
    }
}

/// The flag body of a gflags long flag (`--x...` or `-xy...`), if `arg` is
/// one. A single dash needs at least two characters and a letter first, so
/// that `-h` stays a short flag and `-1` / `-0.5` stay values.
fn long_body(arg: &str) -> Option<&str> {
    if let Some(body) = arg.strip_prefix("--") {
        return (!body.is_empty()).then_some(body);
    }
    let body = arg.strip_prefix('-')?;
    let first = body.chars().next()?;
    let name_len = body.find('=').unwrap_or(body.len());
    (first.is_ascii_alphabetic() && name_len > 1).then_some(body)
}

/// Rewrite `argv` (program name first) into clap's spelling: every gflags
/// long flag gets two dashes, boolean `=value`s and `--noflag` become the
/// bare switch or nothing, and a command word preceded by flags moves to
/// the front. Everything after a bare `--` is left alone; arguments that
/// are not UTF-8 are passed through.
pub fn normalize<I>(argv: I, kinds: &FlagKinds) -> Vec<OsString>
where
    I: IntoIterator,
    I::Item: Into<OsString>,
{
    let mut it = argv.into_iter().map(Into::into);
    let mut out: Vec<OsString> = it.next().into_iter().collect();
    // Index in `out` of the first positional word (the command).
    let mut first_positional: Option<usize> = None;
    while let Some(arg) = it.next() {
        let Some(s) = arg.to_str() else {
            first_positional.get_or_insert(out.len());
            out.push(arg);
            continue;
        };
        if s == "--" {
            out.push(arg);
            out.extend(it.by_ref());
            break;
        }
        let Some(body) = long_body(s) else {
            if !s.starts_with('-') || s == "-" {
                first_positional.get_or_insert(out.len());
            }
            out.push(arg);
            continue;
        };
        let (name, value) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (body, None),
        };
        if kinds.booleans.contains(name) {
            match value.map(parse_bool) {
                None | Some(Some(true)) => out.push(format!("--{name}").into()),
                Some(Some(false)) => {}
                // Not a boolean: let clap report it.
                Some(None) => out.push(format!("--{body}").into()),
            }
            continue;
        }
        if let Some(neg) = name.strip_prefix("no") {
            if value.is_none() && kinds.booleans.contains(neg) {
                continue;
            }
        }
        out.push(format!("--{body}").into());
        // `-flag value`: the value is taken verbatim even if it starts with
        // a dash, as gflags does.
        if value.is_none() && kinds.valued.contains(name) {
            if let Some(v) = it.next() {
                out.push(v);
            }
        }
    }
    // `caffe -gpu 0 train ...`: clap wants the command first.
    if let Some(i) = first_positional {
        let is_cmd = out[i]
            .to_str()
            .is_some_and(|w| kinds.subcommands.contains(w));
        if i > 1 && is_cmd {
            let cmd = out.remove(i);
            out.insert(1, cmd);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds() -> FlagKinds {
        let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        FlagKinds {
            valued: set(&["solver", "gpu", "weights", "level", "stage"]),
            booleans: set(&["debug", "force_backward"]),
            subcommands: set(&["train", "test"]),
        }
    }

    fn norm(args: &[&str]) -> Vec<String> {
        let mut argv = vec!["rcaffe"];
        argv.extend_from_slice(args);
        normalize(argv, &kinds())
            .into_iter()
            .skip(1)
            .map(|s| s.into_string().unwrap())
            .collect()
    }

    #[test]
    fn single_dash_long_flags_get_two_dashes() {
        assert_eq!(
            norm(&["train", "-solver", "s.prototxt"]),
            ["train", "--solver", "s.prototxt"]
        );
        assert_eq!(
            norm(&["train", "-solver=s.prototxt"]),
            ["train", "--solver=s.prototxt"]
        );
        assert_eq!(norm(&["train", "--solver=s"]), ["train", "--solver=s"]);
        assert_eq!(
            norm(&["train", "--solver", "s"]),
            ["train", "--solver", "s"]
        );
        assert_eq!(norm(&["train", "-gpu", "all"]), ["train", "--gpu", "all"]);
        // Unknown long flags are still rewritten (clap reports them).
        assert_eq!(norm(&["train", "-bogus"]), ["train", "--bogus"]);
    }

    #[test]
    fn short_flags_numbers_and_values_stay() {
        assert_eq!(norm(&["-h"]), ["-h"]);
        assert_eq!(norm(&["train", "-level", "-1"]), ["train", "--level", "-1"]);
        // A value that looks like a flag is still the value.
        assert_eq!(norm(&["train", "-stage", "-x"]), ["train", "--stage", "-x"]);
        assert_eq!(norm(&["a", "-", "-5"]), ["a", "-", "-5"]);
    }

    #[test]
    fn booleans() {
        assert_eq!(norm(&["train", "--debug=true"]), ["train", "--debug"]);
        assert_eq!(norm(&["train", "-debug=false"]), ["train"]);
        assert_eq!(norm(&["train", "-debug"]), ["train", "--debug"]);
        assert_eq!(norm(&["train", "--nodebug"]), ["train"]);
        assert_eq!(
            norm(&["train", "--debug=1", "--force_backward=no"]),
            ["train", "--debug"]
        );
        assert_eq!(
            norm(&["train", "--debug=maybe"]),
            ["train", "--debug=maybe"]
        );
    }

    #[test]
    fn command_moves_to_front_and_double_dash_stops() {
        assert_eq!(
            norm(&["-gpu", "0", "train", "-solver", "s"]),
            ["train", "--gpu", "0", "--solver", "s"]
        );
        assert_eq!(norm(&["--", "-solver", "x"]), ["--", "-solver", "x"]);
        // Not a known command: left where it is.
        assert_eq!(
            norm(&["-gpu", "0", "frobnicate"]),
            ["--gpu", "0", "frobnicate"]
        );
    }

    #[test]
    fn from_clap_command() {
        use clap::{Arg, ArgAction, Command};
        let cmd = Command::new("x").subcommand(
            Command::new("train")
                .arg(Arg::new("solver").long("solver"))
                .arg(Arg::new("debug").long("debug").action(ArgAction::SetTrue)),
        );
        let k = FlagKinds::from_command(&cmd);
        assert!(k.valued.contains("solver"));
        assert!(k.booleans.contains("debug"));
        assert!(k.subcommands.contains("train"));
    }
}
