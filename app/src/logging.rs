//! Log output on stderr. Lines end in CR LF so they stay readable while the terminal is in raw
//! mode for the guest console.

use std::io::Write;

pub fn init(verbose: u8) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default))
        .format(|buf, record| {
            writeln!(
                buf,
                "[cove {}] {}\r",
                record.level().as_str().to_lowercase(),
                record.args()
            )
        })
        .init();
}
