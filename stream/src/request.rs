//! Finger request framing (RFC 1288): one line, at most 1024 bytes, parsed in two steps:
//! [`check`] finds a whole line without allocating (or says it is incomplete), [`parse`] reads it.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

pub use crate::errors::ReadRequestError;

/// The longest request line accepted, as Zuul.
pub const MAX_REQUEST: usize = 1024;
/// How long a client has to send its request line, as Zuul.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What a finger client asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `<uuid>`: the build's log from its first byte, followed until the build ends.
    Stream(String),
    /// `?<uuid>`: Sluice's extension for gateways without a build store: one word
    /// (`running`, `pending`, `finished`, `unknown`) and a newline.
    /// A Zuul executor answers it with `Build ID ?<uuid> is not valid`, which reads as unknown.
    Status(String),
    /// Anything else: answered with `Build ID <text> is not valid`.
    Invalid(String),
}

/// The outcome of [`check`] on buffered bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// A whole line of this many bytes (with its `\n`) is buffered.
    Line(usize),
    /// More bytes are needed.
    Incomplete,
    /// The line is longer than [`MAX_REQUEST`].
    TooLong,
}

/// Finds the end of the first line in `buf`.
pub fn check(buf: &[u8]) -> Check {
    match buf.iter().position(|b| *b == b'\n') {
        Some(i) if i < MAX_REQUEST => Check::Line(i + 1),
        Some(_) => Check::TooLong,
        None if buf.len() >= MAX_REQUEST => Check::TooLong,
        None => Check::Incomplete,
    }
}

/// Reads a whole line (as found by [`check`]): surrounding whitespace and `\r` are dropped,
/// and so is RFC 1288's `/W` (verbose) prefix.
pub fn parse(line: &[u8]) -> Request {
    let text = String::from_utf8_lossy(line);
    let mut text = text.trim();
    if let Some(rest) = text.strip_prefix("/W") {
        if rest.is_empty() || rest.starts_with(char::is_whitespace) {
            text = rest.trim_start();
        }
    }
    if let Some(uuid) = text.strip_prefix('?') {
        if is_build_id(uuid) {
            return Request::Status(uuid.to_string());
        }
    }
    if is_build_id(text) {
        Request::Stream(text.to_string())
    } else {
        Request::Invalid(text.to_string())
    }
}

/// Whether `text` is a build id: hexadecimal digits only, as Zuul checks.
pub fn is_build_id(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Reads one request line from a client, within [`REQUEST_TIMEOUT`].
pub async fn read_request<R: AsyncRead + Unpin>(
    reader: &mut R,
) -> Result<Request, ReadRequestError> {
    tokio::time::timeout(REQUEST_TIMEOUT, read_line(reader))
        .await
        .map_err(|_| ReadRequestError::Timeout)?
}

async fn read_line<R: AsyncRead + Unpin>(reader: &mut R) -> Result<Request, ReadRequestError> {
    let mut buf = Vec::with_capacity(128);
    let mut chunk = [0u8; 256];
    loop {
        match check(&buf) {
            Check::Line(n) => return Ok(parse(&buf[..n])),
            Check::TooLong => return Err(ReadRequestError::TooLong),
            Check::Incomplete => {}
        }
        // Read only up to the line limit; anything after the line is client input to discard.
        let n = reader
            .read(&mut chunk)
            .await
            .map_err(ReadRequestError::Io)?;
        if n == 0 {
            return Err(ReadRequestError::Eof);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_finds_lines_and_limits() {
        assert_eq!(check(b"abc"), Check::Incomplete);
        assert_eq!(check(b"abc\r\nmore"), Check::Line(5));
        assert_eq!(check(&[b'a'; MAX_REQUEST]), Check::TooLong);
        let mut long = vec![b'a'; MAX_REQUEST];
        long.push(b'\n');
        assert_eq!(check(&long), Check::TooLong);
    }

    #[test]
    fn parse_reads_finger_forms() {
        assert_eq!(parse(b"abc123\r\n"), Request::Stream("abc123".into()));
        assert_eq!(parse(b"/W abc123\r\n"), Request::Stream("abc123".into()));
        assert_eq!(parse(b"?abc123\n"), Request::Status("abc123".into()));
        assert_eq!(parse(b"../etc\n"), Request::Invalid("../etc".into()));
        assert_eq!(parse(b"\r\n"), Request::Invalid(String::new()));
        assert_eq!(parse(b"?zz\n"), Request::Invalid("?zz".into()));
    }

    #[tokio::test]
    async fn read_request_handles_split_lines_and_eof() {
        let (mut client, mut server) = tokio::io::duplex(64);
        let reader = tokio::spawn(async move { read_request(&mut server).await });
        use tokio::io::AsyncWriteExt;
        client.write_all(b"ab").await.unwrap();
        client.write_all(b"cd\r\n").await.unwrap();
        assert_eq!(
            reader.await.unwrap().unwrap(),
            Request::Stream("abcd".into())
        );

        let (client, mut server) = tokio::io::duplex(64);
        drop(client);
        assert!(matches!(
            read_request(&mut server).await,
            Err(ReadRequestError::Eof)
        ));
    }
}
