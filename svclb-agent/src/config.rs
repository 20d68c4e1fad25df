//! `run --config FILE`: a YAML mapping whose keys are `run`'s long flag names without the
//! dashes (`iface: auto`, `nodeport-addresses: [10.0.0.0/8]`, `maglev: true`). The file
//! fills in every flag the command line (or its environment variable) did not set, so
//! flags always win over the file. Values go through the same clap parser as flags, so
//! the file accepts exactly what the command line accepts.
//!
//! `run --check-config` parses all of it, checks every value and prints the effective
//! configuration in the same format, then exits without touching the data path.
use std::{ffi::OsString, net::SocketAddr, path::Path};

use clap::{ArgMatches, CommandFactory as _, FromArgMatches as _, parser::ValueSource};
use serde_yaml_ng::{Mapping, Value};

use crate::{
    cidr::Ipv4Cidr,
    cli::{Cli, RunArgs, parse_port_range},
    ifaces, nodeport,
};

/// Flags that make no sense in a config file.
const NOT_IN_FILE: &[&str] = &["config", "check-config", "help", "version"];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--config {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("--config {path}: not YAML: {source}")]
    Yaml {
        path: String,
        source: serde_yaml_ng::Error,
    },
    #[error("--config {path}: expected a mapping of flag names to values")]
    NotMapping { path: String },
    #[error(
        "--config {path}: unknown key {key:?} (keys are `run` flag names, e.g. iface, nodeport-addresses)"
    )]
    UnknownKey { path: String, key: String },
    #[error("--config {path}: key {key:?}: {problem}")]
    BadValue {
        path: String,
        key: String,
        problem: String,
    },
}

/// A failed command line: clap's own errors print and exit as clap does (usage, `--help`,
/// `--version`); config file errors are ordinary errors.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Clap(#[from] clap::Error),
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// The parsed command line, and the matches it came from (for [`effective`]).
pub struct Parsed {
    pub cli: Cli,
    pub matches: ArgMatches,
}

/// Parses `argv` (program name first), filling `run` flags from `--config` if given.
pub fn parse(argv: impl IntoIterator<Item = impl Into<OsString>>) -> Result<Parsed, CliError> {
    let mut argv: Vec<OsString> = argv.into_iter().map(Into::into).collect();
    // A first pass only to find --config and which flags the command line set; --iface
    // may come from the file, so it is not required yet.
    let relaxed = Cli::command()
        .mut_subcommand("run", |c| c.mut_arg("iface", |a| a.required(false)))
        .try_get_matches_from(&argv)?;
    if let Some(("run", run)) = relaxed.subcommand()
        && let Some(path) = run.get_one::<std::path::PathBuf>("config")
    {
        let file = load(path)?;
        argv.extend(file_args(&path.display().to_string(), &file, run)?);
    }
    let matches = Cli::command().try_get_matches_from(&argv)?;
    let cli = Cli::from_arg_matches(&matches)?;
    Ok(Parsed { cli, matches })
}

/// Reads `path` as a YAML mapping (an empty file is an empty mapping).
pub fn load(path: &Path) -> Result<Mapping, ConfigError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: shown.clone(),
        source,
    })?;
    match serde_yaml_ng::from_str::<Value>(&text).map_err(|source| ConfigError::Yaml {
        path: shown.clone(),
        source,
    })? {
        Value::Mapping(m) => Ok(m),
        Value::Null => Ok(Mapping::new()),
        _ => Err(ConfigError::NotMapping { path: shown }),
    }
}

/// The `--flag=value` arguments `file` adds to a command line whose `run` matches are
/// `given`: one per key whose flag was not set on the command line or by its
/// environment variable.
pub fn file_args(
    path: &str,
    file: &Mapping,
    given: &ArgMatches,
) -> Result<Vec<OsString>, ConfigError> {
    let mut cmd = Cli::command();
    cmd.build();
    let run = cmd.find_subcommand("run").expect("run subcommand");
    let mut out = Vec::new();
    for (key, value) in file {
        let bad = |problem: String| ConfigError::BadValue {
            path: path.into(),
            key: key_text(key),
            problem,
        };
        let Some(name) = key.as_str() else {
            return Err(ConfigError::UnknownKey {
                path: path.into(),
                key: key_text(key),
            });
        };
        let arg = run
            .get_arguments()
            .find(|a| a.get_long() == Some(name) && !NOT_IN_FILE.contains(&name))
            .ok_or_else(|| ConfigError::UnknownKey {
                path: path.into(),
                key: name.into(),
            })?;
        let id = arg.get_id().as_str();
        if matches!(
            given.value_source(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        ) {
            continue;
        }
        if !arg.get_action().takes_values() {
            match value {
                Value::Bool(true) => out.push(format!("--{name}").into()),
                Value::Bool(false) => {}
                _ => return Err(bad("expected true or false".into())),
            }
            continue;
        }
        let text = match value {
            // An empty list sets nothing (the flag keeps its default).
            Value::Sequence(items) if items.is_empty() => continue,
            Value::Sequence(items) => {
                let Some(delim) = arg.get_value_delimiter() else {
                    return Err(bad("takes one value, not a list".into()));
                };
                let items: Result<Vec<String>, _> = items.iter().map(scalar).collect();
                items.map_err(bad)?.join(&delim.to_string())
            }
            other => scalar(other).map_err(bad)?,
        };
        out.push(format!("--{name}={text}").into());
    }
    Ok(out)
}

fn scalar(v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Null => Err("no value (null)".into()),
        _ => Err("expected a string, number or boolean".into()),
    }
}

fn key_text(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        other => serde_yaml_ng::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_string(),
    }
}

/// Checks every value of `run` that the agent would otherwise only check later (or
/// never, before it touches the data path). The interfaces are not looked up.
pub fn check(args: &RunArgs) -> anyhow::Result<()> {
    parse_port_range(&args.service_node_port_range)
        .map_err(|e| anyhow::anyhow!("--service-node-port-range {e}"))?;
    nodeport::parse(&args.nodeport_addresses)?;
    for c in &args.cluster_cidr {
        c.parse::<Ipv4Cidr>()
            .map_err(|e| anyhow::anyhow!("--cluster-cidr {e}"))?;
    }
    for (flag, addr) in [
        ("--metrics-bind-address", &args.metrics_bind_address),
        ("--healthz-bind-address", &args.healthz_bind_address),
    ] {
        if !addr.is_empty() {
            addr.parse::<SocketAddr>().map_err(|e| {
                anyhow::anyhow!("{flag} {addr:?}: {e} (expected IP:PORT, or empty to disable)")
            })?;
        }
    }
    for i in &args.iface {
        if i.trim().is_empty() {
            return Err(ifaces::IfaceError::Empty(i.clone()).into());
        }
    }
    if let Some(dir) = &args.manifests
        && !dir.is_dir()
    {
        anyhow::bail!("--manifests {}: not a directory", dir.display());
    }
    Ok(())
}

/// The effective `run` configuration as a `--config` file: every flag with its value
/// (set, from the file, or the default), in `--help` order.
pub fn effective(matches: &ArgMatches) -> String {
    let Some(("run", run)) = matches.subcommand() else {
        return String::new();
    };
    let mut cmd = Cli::command();
    cmd.build();
    let mut out = Mapping::new();
    for arg in cmd
        .find_subcommand("run")
        .expect("run subcommand")
        .get_arguments()
    {
        let (Some(long), id) = (arg.get_long(), arg.get_id().as_str()) else {
            continue;
        };
        if NOT_IN_FILE.contains(&long) {
            continue;
        }
        let value = if !arg.get_action().takes_values() {
            Value::Bool(run.get_flag(id))
        } else {
            let raw: Vec<String> = run
                .get_raw(id)
                .map(|vals| vals.map(|v| v.to_string_lossy().into_owned()).collect())
                .unwrap_or_default();
            // Unset lists and options are left out: an empty value would mean "set to
            // nothing", which differs from unset for e.g. --xdp-iface.
            match (arg.get_value_delimiter(), raw.len()) {
                (_, 0) => continue,
                (None, _) => Value::String(raw.join(" ")),
                (Some(_), _) => Value::Sequence(raw.into_iter().map(Value::String).collect()),
            }
        };
        out.insert(Value::String(long.into()), value);
    }
    serde_yaml_ng::to_string(&out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Command;

    fn write(text: &str) -> tempfile_path::TempFile {
        tempfile_path::TempFile::new(text)
    }

    /// A unique file removed on drop (no extra crate for one test helper).
    mod tempfile_path {
        use std::{
            path::PathBuf,
            sync::atomic::{AtomicU32, Ordering},
        };
        static N: AtomicU32 = AtomicU32::new(0);
        pub struct TempFile(pub PathBuf);
        impl TempFile {
            pub fn new(text: &str) -> Self {
                let p = std::env::temp_dir().join(format!(
                    "svclb-config-test-{}-{}.yaml",
                    std::process::id(),
                    N.fetch_add(1, Ordering::Relaxed)
                ));
                std::fs::write(&p, text).unwrap();
                TempFile(p)
            }
            pub fn arg(&self) -> String {
                format!("--config={}", self.0.display())
            }
        }
        impl Drop for TempFile {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.0);
            }
        }
    }

    fn run_args(argv: &[&str]) -> Result<RunArgs, CliError> {
        let p = parse(std::iter::once("svclb-agent").chain(argv.iter().copied()))?;
        match p.cli.cmd {
            Command::Run(a) => Ok(a),
            other => panic!("not run: {other:?}"),
        }
    }

    #[test]
    fn file_fills_flags_and_the_command_line_wins() {
        let f = write(
            "iface: [eth0, 'veth*']\nnodeport-addresses: 10.0.0.0/8\nmaglev: true\n\
             min-sync-period-ms: 50\nmetrics-bind-address: 0.0.0.0:10249\ncluster-cidr: [10.244.0.0/16]\n",
        );
        let a = run_args(&["run", &f.arg()]).unwrap();
        assert_eq!(a.iface, ["eth0", "veth*"]);
        assert_eq!(a.nodeport_addresses, ["10.0.0.0/8"]);
        assert!(a.maglev);
        assert_eq!(a.min_sync_period_ms, 50);
        assert_eq!(a.metrics_bind_address, "0.0.0.0:10249");
        assert_eq!(a.cluster_cidr, ["10.244.0.0/16"]);

        let a = run_args(&["run", &f.arg(), "--iface=lo", "--min-sync-period-ms", "7"]).unwrap();
        assert_eq!(
            a.iface,
            ["lo"],
            "a list on the command line replaces the file's"
        );
        assert_eq!(a.min_sync_period_ms, 7);
        assert_eq!(a.nodeport_addresses, ["10.0.0.0/8"]);
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let f = write("iface: auto\nnode-port-addresses: 10.0.0.0/8\n");
        let e = run_args(&["run", &f.arg()]).err().unwrap();
        assert!(
            matches!(&e, CliError::Config(ConfigError::UnknownKey { key, .. }) if key == "node-port-addresses"),
            "{e}"
        );
        assert!(
            e.to_string()
                .contains("unknown key \"node-port-addresses\""),
            "{e}"
        );

        for (text, key) in [
            ("iface: auto\nmaglev: yes please\n", "maglev"),
            ("iface: auto\nbpffs: [a, b]\n", "bpffs"),
            ("iface: auto\nxdp-mode: {a: 1}\n", "xdp-mode"),
            ("iface: auto\nconfig: other.yaml\n", "config"),
        ] {
            let f = write(text);
            let e = run_args(&["run", &f.arg()]).err().unwrap();
            assert!(e.to_string().contains(&format!("{key:?}")), "{text}: {e}");
        }
        // A value clap refuses is clap's error, naming the flag.
        let f = write("iface: auto\nxdp-mode: turbo\n");
        let e = run_args(&["run", &f.arg()]).err().unwrap();
        assert!(
            matches!(e, CliError::Clap(_)) && e.to_string().contains("--xdp-mode"),
            "{e}"
        );
    }

    #[test]
    fn iface_is_required_from_somewhere() {
        let f = write("maglev: true\n");
        let e = run_args(&["run", &f.arg()]).err().unwrap();
        assert!(e.to_string().contains("--iface"), "{e}");
        assert!(run_args(&["run", "--iface", "lo"]).is_ok());
        let e = run_args(&["run", "--config=/nonexistent/svclb.yaml"])
            .err()
            .unwrap();
        assert!(e.to_string().contains("/nonexistent/svclb.yaml"), "{e}");
        let f = write("- iface\n");
        assert!(matches!(
            run_args(&["run", &f.arg()]),
            Err(CliError::Config(ConfigError::NotMapping { .. }))
        ));
    }

    #[test]
    fn effective_config_round_trips_through_a_file() {
        let f = write("iface: [eth0]\nnodeport-addresses: primary\nxdp-mode: skb\n");
        let p = parse(["svclb-agent", "run", &f.arg(), "--maglev"]).unwrap();
        let text = effective(&p.matches);
        assert!(text.contains("maglev: true"), "{text}");
        assert!(text.contains("xdp-mode: skb"), "{text}");
        let again = write(&text);
        let a = run_args(&["run", &again.arg()]).unwrap();
        assert!(a.maglev);
        assert_eq!(a.iface, ["eth0"]);
        assert_eq!(a.nodeport_addresses, ["primary"]);
        assert_eq!(
            effective(&parse(["svclb-agent", "run", &again.arg()]).unwrap().matches),
            text
        );
    }

    #[test]
    fn check_names_the_bad_flag() {
        let ok = run_args(&["run", "--iface=auto", "--cluster-cidr=10.244.0.0/16"]).unwrap();
        check(&ok).unwrap();
        for (flag, expect) in [
            ("--cluster-cidr=10.244.0.1/16", "--cluster-cidr"),
            ("--nodeport-addresses=10.0.0.0/40", "--nodeport-addresses"),
            ("--metrics-bind-address=localhost", "--metrics-bind-address"),
            ("--service-node-port-range=5-1", "--service-node-port-range"),
        ] {
            let a = run_args(&["run", "--iface=auto", flag]).unwrap();
            let e = format!("{:#}", check(&a).unwrap_err());
            assert!(e.contains(expect), "{flag}: {e}");
        }
    }
}
