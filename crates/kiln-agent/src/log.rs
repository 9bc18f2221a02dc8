//! Log lines on stderr, which systemd sends to the journal.

/// One line, prefixed with the program's name.
pub fn info(message: &str) {
    eprintln!("kiln-agent: {message}");
}

pub fn warn(message: &str) {
    eprintln!("kiln-agent: warning: {message}");
}
