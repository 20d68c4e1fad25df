use anyhow::Result;
use svclb_agent::{
    cli::Command,
    config::{self, CliError},
    dataplane, dump, flow, run,
};
use tracing_subscriber::EnvFilter;

fn main() -> Result<()> {
    let (cli, matches) = match config::parse(std::env::args_os()) {
        Ok(p) => (p.cli, p.matches),
        Err(CliError::Clap(e)) => e.exit(),
        Err(CliError::Config(e)) => return Err(e.into()),
    };
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_new(&cli.log_level)?)
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal, not in files or container logs.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match cli.cmd {
        Command::Run(args) if args.check_config => {
            config::check(&args)?;
            print!("{}", config::effective(&matches));
            Ok(())
        }
        Command::Run(args) => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(run::run(args))
        }
        Command::Dump(args) if args.flow.is_some() => {
            let view = flow::read(&args.bpffs, args.flow.as_ref().expect("checked"))?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&view)?);
            } else {
                print!("{}", flow::render_text(&view));
            }
            Ok(())
        }
        Command::Dump(args) => {
            let view = dump::read_mode(args.mode, &args.bpffs)?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&view)?);
            } else {
                print!("{}", dump::render_text(&view));
            }
            Ok(())
        }
        Command::Cleanup(args) => {
            dataplane::select::cleanup_all(&args.bpffs)?;
            eprintln!(
                "removed svclb programs and pins under {}, KUBE-* iptables chains, IPVS virtual servers",
                args.bpffs.display()
            );
            Ok(())
        }
    }
}
