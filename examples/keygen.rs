//! Prints a fresh key for cookie mode as a `Rocket.toml` entry, ready to
//! paste:
//!
//! ```sh
//! cargo run --example keygen
//! cargo run --example keygen -- --id 2025-q3 --algorithm aes256gcm --profile release
//! ```
//!
//! The key is 32 bytes from the operating system's CSPRNG, in base64. The
//! id defaults to today's date; the algorithm to `xchacha20poly1305`; the
//! profile to `release`.
//!
//! The first key of `keys` seals, so a new key goes above the keys already
//! there. Keep the old keys for `idle_timeout` (plus `clock_skew`) after
//! every instance seals with the new one: by then each cookie they sealed
//! was either sealed again or has expired. Then remove them.

use std::process::ExitCode;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rand::TryRng as _;
use rocket::time::OffsetDateTime;

const USAGE: &str = "usage: keygen [--id ID] [--algorithm xchacha20poly1305|aes256gcm] \
                     [--profile PROFILE]";

fn main() -> ExitCode {
    let today = OffsetDateTime::now_utc().date();
    let mut id = format!(
        "{}-{:02}-{:02}",
        today.year(),
        u8::from(today.month()),
        today.day()
    );
    let mut algorithm = "xchacha20poly1305".to_string();
    let mut profile = "release".to_string();

    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let target = match flag.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}");
                println!("Prints a fresh cookie-mode key as a Rocket.toml entry; the key id");
                println!("defaults to today's date. Short ids leave more room in the cookie.");
                return ExitCode::SUCCESS;
            }
            "--id" => &mut id,
            "--algorithm" => &mut algorithm,
            "--profile" => &mut profile,
            _ => return fail(&format!("unknown argument `{flag}`")),
        };
        match args.next() {
            Some(value) => *target = value,
            None => return fail(&format!("`{flag}` needs a value")),
        }
    }
    let id_ok = (1..=32).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !id_ok {
        return fail("the id must be 1 to 32 letters, digits, `.`, `_` or `-`");
    }
    if !["xchacha20poly1305", "aes256gcm"].contains(&algorithm.as_str()) {
        return fail("the algorithm must be xchacha20poly1305 or aes256gcm");
    }
    if profile.is_empty()
        || !profile
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return fail("the profile must be a plain name such as `release`");
    }

    let mut key = [0u8; 32];
    if rand::rngs::SysRng.try_fill_bytes(&mut key).is_err() {
        return fail("the operating system's CSPRNG failed");
    }
    println!("# A cookie-mode session key. Put it above the keys already listed: the");
    println!("# first one seals. Keep it secret: out of version control, or in the");
    println!("# environment (ROCKET_SESSIONS) instead of this file.");
    println!("[[{profile}.sessions.keys]]");
    println!("id = \"{id}\"");
    println!("algorithm = \"{algorithm}\"");
    println!("key = \"{}\"", STANDARD.encode(key));
    ExitCode::SUCCESS
}

fn fail(message: &str) -> ExitCode {
    eprintln!("keygen: {message}\n{USAGE}");
    ExitCode::from(2)
}
