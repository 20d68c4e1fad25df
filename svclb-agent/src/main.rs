use anyhow::Result;
use clap::Parser as _;
use svclb_agent::{
    cli::{Cli, Command},
    dataplane, dump, flow, run,
};
use tracing_subscriber::EnvFilter;

fn main() -> Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_new(&cli.log_level)?)
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal, not in files or container logs.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match cli.cmd {
        Command::Run(args) => {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
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
            let view = dump::read(&args.bpffs)?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&view)?);
            } else {
                print!("{}", dump::render_text(&view));
            }
            Ok(())
        }
        Command::Cleanup(args) => {
            dataplane::ebpf::cleanup(&args.bpffs)?;
            eprintln!("removed svclb programs and pins under {}", args.bpffs.display());
            Ok(())
        }
    }
}
