//! How field values are written in the text log.
//!
//! tracing-subscriber escapes control characters in an event's message
//! but writes every other field as it is. Several fields carry text from
//! the network (a release's `service.name` in `subject=`, the body of a
//! webhook target's error answer in `error=`), and an ESC or BEL in them
//! would act on the terminal of whoever reads the log there: retitle it,
//! clear it, recolour or hide lines. Here every control character of every
//! field is written escaped (`\u{1b}`, `\n`), the way `verdict runs`
//! shows them; the JSON log escapes them already.

use std::fmt;

use tracing::field::Field;

use crate::console::fmt::hidden;
use tracing_subscriber::field::MakeExt as _;
use tracing_subscriber::fmt::format::{self, Writer};
use tracing_subscriber::fmt::FormatFields;

/// The text log's field formatter: `name=value` pairs separated by
/// spaces, the message first and bare, control characters escaped.
pub fn fields() -> impl for<'w> FormatFields<'w> + Send + Sync + 'static {
    format::debug_fn(
        |writer: &mut Writer<'_>, field: &Field, value: &dyn fmt::Debug| {
            let text = format!("{value:?}");
            if field.name() != "message" {
                write!(writer, "{}=", field.name())?;
            }
            write_escaped(writer, &text)
        },
    )
    .delimited(" ")
}

/// `text` with each control character (C0, DEL, C1) and each invisible
/// formatting character escaped, as `verdict runs` and the status page show
/// them ([`hidden`]).
fn write_escaped(writer: &mut Writer<'_>, text: &str) -> fmt::Result {
    for c in text.chars() {
        if hidden(c) {
            for e in c.escape_default() {
                writer.write_char(e)?;
            }
        } else {
            writer.write_char(c)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A writer that keeps what the subscriber wrote.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::ErrorKind::Other)?
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn control_characters_from_the_network_are_written_escaped() {
        let buffer = Buffer::default();
        let sink = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || sink.clone())
            .fmt_fields(fields())
            .finish();
        let subject = "esc\u{1b}]0;pwned\u{7}\u{1b}[2Jx/1";
        let error = "HTTP 500: \u{1b}[31mRED\u{9b}0m\nnext";
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(contract = "default", subject = %subject, error = %error, n = 3, "Run changed state.");
        });
        let logged = String::from_utf8(buffer.0.lock().expect("lock").clone()).expect("UTF-8");
        assert!(
            !logged.trim_end().chars().any(char::is_control),
            "{logged:?}"
        );
        assert!(
            logged.contains(r#"Run changed state. contract="default" subject=esc\u{1b}]0;pwned\u{7}\u{1b}[2Jx/1 error=HTTP 500: \u{1b}[31mRED\u{9b}0m\nnext n=3"#),
            "{logged}"
        );
    }
}
