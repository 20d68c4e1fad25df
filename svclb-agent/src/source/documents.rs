//! Splitting a manifest file into documents, each parsed on its own so one bad
//! document does not hide the others. (serde_yaml_ng's multi-document iterator stops
//! being useful after the first syntax error.)
use serde_json::Value;

/// One document of a file.
#[derive(Debug)]
pub(crate) struct Document {
    /// 1-based among the file's non-empty documents.
    pub index: usize,
    /// 1-based line where the document's content starts.
    pub line: usize,
    pub parsed: Result<Value, String>,
}

/// The YAML documents of `text`. A line that starts with `---` opens a document and a
/// `...` line closes one: at column 0 these are document markers even inside block
/// scalars, so cutting there is exact. Documents holding only comments are skipped.
pub(crate) fn yaml(text: &str) -> Vec<Document> {
    let mut chunks: Vec<(usize, Vec<&str>)> = vec![(1, Vec::new())];
    for (i, line) in text.lines().enumerate() {
        let lineno = i + 1;
        if is_marker(line, "---") {
            chunks.push((lineno, vec![line]));
        } else if is_marker(line, "...") {
            chunks.last_mut().expect("never empty").1.push(line);
            chunks.push((lineno + 1, Vec::new()));
        } else if line.starts_with('%') && !has_content(&chunks.last().expect("never empty").1) {
            // A directive (%YAML, %TAG) before the `---` it belongs to: libyaml only
            // knows YAML 1.1 and Kubernetes manifests never need one.
            chunks.push((lineno + 1, Vec::new()));
        } else {
            chunks.last_mut().expect("never empty").1.push(line);
        }
    }
    let mut docs = Vec::new();
    for (line, lines) in chunks {
        // Where the object starts, past the marker and any leading comments.
        let Some(first) = lines.iter().position(|l| has_content(&[l])) else {
            continue;
        };
        let text = lines.join("\n") + "\n";
        // Through YAML's own Value first: it refuses duplicate keys (as kubectl does),
        // where deserializing straight into JSON would keep the last one silently.
        let parsed = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(&text)
            .map_err(|e| shift_lines(&e.to_string(), line - 1))
            .and_then(|v| {
                serde_json::to_value(v).map_err(|e| format!("not representable as JSON: {e}"))
            });
        docs.push(Document {
            index: docs.len() + 1,
            line: line + first,
            parsed,
        });
    }
    docs
}

/// The JSON values of `text` (one, or several concatenated). A syntax error ends the
/// file: JSON has no marker to resynchronise on.
pub(crate) fn json(text: &str) -> Vec<Document> {
    let mut docs = Vec::new();
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    // Lines are counted incrementally: a file may hold thousands of values.
    let (mut counted_to, mut line) = (0, 1);
    loop {
        let start = stream.byte_offset();
        let Some(next) = stream.next() else { break };
        let value_start = text.len() - text[start..].trim_start().len();
        line += text[counted_to..value_start].matches('\n').count();
        counted_to = value_start;
        let failed = next.is_err();
        docs.push(Document {
            index: docs.len() + 1,
            line,
            parsed: next.map_err(|e| e.to_string()),
        });
        if failed {
            break;
        }
    }
    docs
}

/// Rewrites the parser's "line N column" positions, counted from the document's first
/// line, into file lines.
fn shift_lines(message: &str, offset: usize) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find("line ") {
        let (head, tail) = rest.split_at(at + "line ".len());
        out += head;
        let digits = tail.len() - tail.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        match tail[..digits].parse::<usize>() {
            Ok(n) if tail[digits..].starts_with(" column") => out += &(n + offset).to_string(),
            _ => out += &tail[..digits],
        }
        rest = &tail[digits..];
    }
    out + rest
}

fn is_marker(line: &str, marker: &str) -> bool {
    line.strip_prefix(marker)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']))
}

/// Whether any line holds more than markers, blanks and comments.
fn has_content(lines: &[&str]) -> bool {
    lines.iter().any(|&l| {
        let body = if is_marker(l, "---") || is_marker(l, "...") {
            &l[3..]
        } else {
            l
        };
        let t = body.trim();
        !t.is_empty() && !t.starts_with('#')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_on_markers_and_skips_empty_documents() {
        let text = "# header comment\n---\na: 1\n---\n# only a comment\n---\n\n--- # trailing\nb: 2\n...\nc: 3\n";
        let docs = yaml(text);
        let got: Vec<(usize, usize, Value)> = docs
            .into_iter()
            .map(|d| (d.index, d.line, d.parsed.unwrap()))
            .collect();
        assert_eq!(
            got,
            vec![
                (1, 3, serde_json::json!({"a": 1})),
                (2, 9, serde_json::json!({"b": 2})),
                (3, 11, serde_json::json!({"c": 3})),
            ]
        );
    }

    #[test]
    fn first_document_needs_no_marker_and_dashes_inside_lines_do_not_split() {
        let docs = yaml("a: '---'\nb: |\n  x\n  ---\n");
        assert_eq!(docs.len(), 1);
        assert_eq!(
            docs[0].parsed.as_ref().unwrap(),
            &serde_json::json!({"a": "---", "b": "x\n---\n"})
        );
    }

    #[test]
    fn syntax_error_is_confined_to_its_document_and_reports_file_lines() {
        let docs = yaml("a: 1\n---\nb: [unclosed\n---\nc: 3\n");
        assert_eq!(docs.len(), 3);
        assert!(docs[0].parsed.is_ok());
        let err = docs[1].parsed.as_ref().unwrap_err();
        // The error sits on line 3 or 4 of the file, not line 1 or 2 of the chunk.
        assert!(err.contains("line 3") || err.contains("line 4"), "{err}");
        assert_eq!(
            docs[2].parsed.as_ref().unwrap(),
            &serde_json::json!({"c": 3})
        );
    }

    #[test]
    fn error_positions_are_file_lines() {
        assert_eq!(
            shift_lines(
                "did not find expected key at line 2 column 3, while parsing a block mapping at line 1 column 1",
                10
            ),
            "did not find expected key at line 12 column 3, while parsing a block mapping at line 11 column 1"
        );
        assert_eq!(
            shift_lines("bad pipeline 7 at line x", 3),
            "bad pipeline 7 at line x"
        );
    }

    #[test]
    fn duplicate_keys_are_an_error() {
        // Typically two objects pasted together without a `---` between them.
        let docs = yaml("kind: Service\nmetadata: {name: a}\nkind: Service\nmetadata: {name: b}\n");
        let err = docs[0].parsed.as_ref().unwrap_err();
        assert!(err.contains("duplicate"), "{err}");
    }

    #[test]
    fn directive_before_marker_is_dropped() {
        let docs = yaml("%YAML 1.2\n---\na: 1\n");
        assert_eq!(docs.len(), 1);
        assert_eq!(
            docs[0].parsed.as_ref().unwrap(),
            &serde_json::json!({"a": 1})
        );
    }

    #[test]
    fn json_stream_with_lines_and_error_stop() {
        let docs = json("{\"a\": 1}\n\n{\"b\": 2}\n{\"c\": \n");
        assert_eq!(docs.len(), 3);
        assert_eq!((docs[0].line, docs[1].line, docs[2].line), (1, 3, 4));
        assert!(docs[2].parsed.is_err());
    }
}
