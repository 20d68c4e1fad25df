//! The little HTTP/1.1 the test pods and the probe speak: enough for `GET` with
//! keep-alive or `Connection: close`, readable by curl and browsers too.

use std::io::{self, Read, Write};

/// Largest request or response head either side accepts.
const MAX_HEAD: usize = 8 * 1024;
/// Largest response body the probe accepts (pods answer with their name).
const MAX_BODY: usize = 64 * 1024;

/// Header a pod adds to every answer: the local port the request arrived on, so a test
/// can tell which `targetPort` a Service port was translated to.
pub const SERVED_PORT_HEADER: &str = "x-served-port";

/// One HTTP message: the head (start line and headers) and the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub head: String,
    pub body: Vec<u8>,
}

impl Message {
    /// Value of header `name` (case-insensitive), trimmed.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }

    /// Whether the sender asked to close the connection after this message.
    pub fn wants_close(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }

    /// Status code of a response head (`HTTP/1.1 200 OK` → 200).
    pub fn status(&self) -> Option<u16> {
        self.head.split_whitespace().nth(1)?.parse().ok()
    }
}

/// Reads one message from `stream`. `pending` carries bytes read past the previous
/// message (keep-alive); the body length comes from `Content-Length` (0 when absent, as
/// for a GET). Returns `Ok(None)` on a clean end of stream before any byte.
pub fn read_message(stream: &mut impl Read, pending: &mut Vec<u8>) -> io::Result<Option<Message>> {
    let head_end = loop {
        if let Some(pos) = find(pending, b"\r\n\r\n") {
            break pos;
        }
        if pending.len() > MAX_HEAD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "HTTP head too long",
            ));
        }
        let mut chunk = [0u8; 2048];
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            if pending.is_empty() {
                return Ok(None);
            }
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        pending.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&pending[..head_end]).into_owned();
    pending.drain(..head_end + 4);
    let mut message = Message {
        head,
        body: Vec::new(),
    };
    let length: usize = match message.header("content-length") {
        Some(v) => v
            .parse()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad Content-Length"))?,
        None => 0,
    };
    if length > MAX_BODY {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "HTTP body too long",
        ));
    }
    while pending.len() < length {
        let mut chunk = [0u8; 2048];
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        pending.extend_from_slice(&chunk[..n]);
    }
    message.body = pending.drain(..length).collect();
    Ok(Some(message))
}

/// Writes a `GET /` request; `close` asks the server to close after answering.
pub fn write_get(stream: &mut impl Write, host: &str, close: bool) -> io::Result<()> {
    let connection = if close { "close" } else { "keep-alive" };
    write!(
        stream,
        "GET / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: svclb-probe\r\nConnection: {connection}\r\n\r\n"
    )?;
    stream.flush()
}

/// Writes the pod's answer: its name and a newline, and the port it was served on.
pub fn write_answer(stream: &mut impl Write, name: &str, port: u16, close: bool) -> io::Result<()> {
    let body = format!("{name}\n");
    let connection = if close { "close" } else { "keep-alive" };
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
         {SERVED_PORT_HEADER}: {port}\r\nConnection: {connection}\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_round_trips_with_keep_alive_pipelining() {
        let mut wire = Vec::new();
        write_answer(&mut wire, "pod1", 8080, false).unwrap();
        write_answer(&mut wire, "pod2", 8081, true).unwrap();
        let mut reader = wire.as_slice();
        let mut pending = Vec::new();

        let first = read_message(&mut reader, &mut pending).unwrap().unwrap();
        assert_eq!(first.status(), Some(200));
        assert_eq!(first.body, b"pod1\n");
        assert_eq!(first.header(SERVED_PORT_HEADER), Some("8080"));
        assert!(!first.wants_close());

        let second = read_message(&mut reader, &mut pending).unwrap().unwrap();
        assert_eq!(second.body, b"pod2\n");
        assert_eq!(second.header("X-Served-Port"), Some("8081"));
        assert!(second.wants_close());

        assert_eq!(read_message(&mut reader, &mut pending).unwrap(), None);
    }

    #[test]
    fn request_without_body_and_truncated_input() {
        let mut wire = Vec::new();
        write_get(&mut wire, "198.18.0.10", true).unwrap();
        let mut pending = Vec::new();
        let request = read_message(&mut wire.as_slice(), &mut pending)
            .unwrap()
            .unwrap();
        assert!(request.head.starts_with("GET / HTTP/1.1"));
        assert!(request.wants_close());
        assert!(request.body.is_empty());

        let cut = &wire[..wire.len() - 3];
        let err = read_message(&mut &cut[..], &mut Vec::new()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn oversized_head_is_rejected() {
        let wire = vec![b'a'; MAX_HEAD + 4096];
        let err = read_message(&mut wire.as_slice(), &mut Vec::new()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
