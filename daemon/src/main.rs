//! pimd's command line: reads the arguments and hands over to the library (`startup.rs`).
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: pimd [--config PATH] [--check-config] [--reload PID]
       pimd --fleet-setup ADMIN_CONNINFO [--policy FILE] [--add-host NAME [--tags T,...]]
                          [--enrol-admin NAME]...

  --config PATH    configuration file (default /etc/pim/pim.toml)
  --check-config   validate the configuration, print every problem, and exit
  --reload PID     make the running pimd PID re-read its configuration (SIGHUP), wait for its
                   answer and exit non-zero if it kept the old one (systemd's ExecReload)
  --fleet-setup    create or upgrade the fleet's schema in PostgreSQL, store the first policy,
                   add hosts, issue the first administrators' enrolment tickets
                   (see 'pimd --fleet-setup --help')
  --version        print the version and exit";

struct Options {
    config: PathBuf,
    check_only: bool,
    reload: Option<nix::unistd::Pid>,
}

/// A process id to signal: a positive number, so that nothing reaches a process group.
fn parse_pid(text: &str) -> Result<nix::unistd::Pid, String> {
    match text.parse::<i32>() {
        Ok(pid) if pid > 0 => Ok(nix::unistd::Pid::from_raw(pid)),
        _ => Err(format!(
            "--reload needs the process id of the running pimd, got '{}'",
            pim_common::text::escape(text)
        )),
    }
}

fn parse_args() -> Result<Option<Options>, String> {
    let mut options = Options {
        config: PathBuf::from(pim_daemon::DEFAULT_PATH),
        check_only: false,
        reload: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" => {
                options.config = args
                    .next()
                    .map(PathBuf::from)
                    .ok_or("--config needs a path")?;
            }
            s if s.starts_with("--config=") => {
                options.config = PathBuf::from(&s["--config=".len()..]);
            }
            "--check-config" => options.check_only = true,
            "--reload" => {
                let pid = args
                    .next()
                    .ok_or("--reload needs the process id of the running pimd")?;
                options.reload = Some(parse_pid(&pid)?);
            }
            "--help" | "-h" => {
                println!("{USAGE}");
                return Ok(None);
            }
            "--version" => {
                println!("pimd {}", env!("CARGO_PKG_VERSION"));
                return Ok(None);
            }
            other => {
                return Err(format!(
                    "unknown argument '{}'",
                    pim_common::text::escape(other)
                ))
            }
        }
    }
    Ok(Some(options))
}

/// `pimd --freeze-uid UID GID`: the short-lived helper pimd runs at a grant's end to stop
/// every process of the user at once (processes.rs, `freeze_as`). Not for people.
fn freeze_helper(args: &[String]) -> ExitCode {
    let ids: Option<(u32, u32)> = match args {
        [uid, gid] => uid.parse().ok().zip(gid.parse().ok()),
        _ => None,
    };
    let Some((uid, gid)) = ids else {
        eprintln!("pimd: {} needs a uid and a gid", pim_daemon::FREEZE_ARG);
        return ExitCode::from(2);
    };
    match pim_daemon::freeze_as(uid, gid) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pimd {}: {e}", pim_daemon::FREEZE_ARG);
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(pim_daemon::FREEZE_ARG) {
        return freeze_helper(&args[2..]);
    }
    if args.get(1).map(String::as_str) == Some("--fleet-setup") {
        if matches!(args.get(2).map(String::as_str), Some("--help" | "-h")) {
            println!("{}", pim_daemon::FLEET_SETUP_USAGE);
            return ExitCode::SUCCESS;
        }
        return pim_daemon::fleet_setup(&args[2..]);
    }
    let options = match parse_args() {
        Ok(Some(o)) => o,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pimd: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if let Some(pid) = options.reload {
        return pim_daemon::reload_running(pid);
    }
    pim_daemon::start(&options.config, options.check_only)
}

#[cfg(test)]
mod tests {
    use super::parse_pid;

    #[test]
    fn given_reload_pids_then_only_a_positive_one_is_signalled() {
        assert_eq!(parse_pid("4242").unwrap().as_raw(), 4242);
        for bad in ["0", "-1", "", "12x", "99999999999"] {
            let e = parse_pid(bad).unwrap_err();
            assert!(e.contains("--reload needs the process id"), "{bad}: {e}");
        }
    }
}
