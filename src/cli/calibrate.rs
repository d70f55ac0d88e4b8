//! `hotcall calibrate`: measure what calls cost on this CPU and print it
//! (or its JSON, which `HOTCALL_CALIBRATION=<file>` loads back).

use clap::Args;

use super::CliResult;

#[derive(Args, Debug)]
pub struct CalibrateArgs {
    /// Print the calibration as JSON (save it to a file; a process started
    /// with `HOTCALL_CALIBRATION=<file>` uses it instead of measuring).
    #[arg(long)]
    json: bool,
}

pub fn run(args: &CalibrateArgs) -> CliResult {
    let c = hotcall::calibrate::measure();
    if args.json {
        println!("{}", c.to_json());
    } else {
        print!("{c}");
    }
    Ok(())
}
