//! Reading and writing GraphDefs, losslessly.
//!
//! Binary `.pb` files are read whole into one buffer and indexed in place
//! ([`Graph::from_bytes`]): nodes are slices of that buffer, not copies.
//! Writing streams the nodes' bytes into a temporary file beside the target,
//! which is renamed over the target only once everything is written: a
//! failed write never leaves a partial file, and the input is never touched.
//!
//! The text format goes through prost-reflect's dynamic messages, described
//! by the same `proto/` files, so every field survives both formats.

use std::fs;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use bytes::Bytes;
use miette::{Diagnostic, NamedSource, SourceSpan};
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor};

use crate::graph::Graph;

/// A GraphDef serialization format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Binary protobuf (`.pb`).
    #[value(name = "pb", alias = "binary")]
    Binary,
    /// Protobuf text format (`.pbtxt`).
    #[value(name = "pbtxt", alias = "text")]
    Text,
}

impl Format {
    /// The format a path's extension names: `.pbtxt`, `.prototxt`,
    /// `.textproto` and `.txt` are text, anything else binary.
    pub fn from_path(path: &Path) -> Format {
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        match ext.to_ascii_lowercase().as_str() {
            "pbtxt" | "prototxt" | "textproto" | "txt" => Format::Text,
            _ => Format::Binary,
        }
    }

    /// The conventional file extension.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Binary => "pb",
            Format::Text => "pbtxt",
        }
    }
}

/// Why a model could not be read.
#[derive(Debug, thiserror::Error, Diagnostic)]
pub enum ReadError {
    /// The file could not be opened or read.
    #[error("cannot read {path}: {source}")]
    #[diagnostic(code(graphrw::io::read))]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// The file has no bytes.
    #[error("{path}: the file is empty, so it holds no GraphDef")]
    #[diagnostic(code(graphrw::io::empty))]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// The bytes are not a GraphDef in the expected format.
    #[error("{path}: not a {} GraphDef: {reason}", match format { Format::Binary => "binary", Format::Text => "text-format" })]
    #[diagnostic(code(graphrw::io::not_graphdef))]
    NotGraphDef {
        /// The file.
        path: PathBuf,
        /// The format it was read as.
        format: Format,
        /// What is wrong, with the byte offset where it was found.
        reason: String,
        /// What the file probably is instead, and what to do.
        #[help]
        hint: Option<String>,
    },
    /// The file is not valid text-format GraphDef.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Text(Box<TextError>),
}

/// A text-format parse error, with the file's text for the label.
#[derive(Debug, thiserror::Error, Diagnostic)]
#[error("{path}: not a text-format GraphDef: {message}")]
#[diagnostic(code(graphrw::io::bad_text))]
pub struct TextError {
    /// The file.
    pub path: PathBuf,
    /// The parser's message.
    pub message: String,
    /// The file's text.
    #[source_code]
    pub source_code: NamedSource<String>,
    /// Where the parser stopped.
    #[label("here")]
    pub span: Option<SourceSpan>,
    /// What the file probably is instead, and what to do.
    #[help]
    pub hint: Option<String>,
}

/// Why a model could not be written.
#[derive(Debug, thiserror::Error, Diagnostic)]
#[error("cannot write {path}: {source}")]
#[diagnostic(code(graphrw::io::write))]
pub struct WriteError {
    /// The target file.
    pub path: PathBuf,
    /// The operating system's error.
    pub source: io::Error,
}

/// Reads a GraphDef from `path` (`-` is standard input) in `format`, or in
/// the format its extension names.
pub fn read_graph(path: &Path, format: Option<Format>) -> Result<Graph, ReadError> {
    let io_err = |source| ReadError::Io { path: path.to_path_buf(), source };
    let data = if path == Path::new("-") {
        let mut buf = Vec::new();
        io::Read::read_to_end(&mut io::stdin().lock(), &mut buf).map_err(io_err)?;
        Bytes::from(buf)
    } else {
        map_file(path).map_err(io_err)?
    };
    if data.is_empty() {
        return Err(ReadError::Empty { path: path.to_path_buf() });
    }
    match format.unwrap_or_else(|| Format::from_path(path)) {
        Format::Binary => decode_binary(data).map_err(|(reason, hint)| ReadError::NotGraphDef {
            path: path.to_path_buf(),
            format: Format::Binary,
            reason,
            hint,
        }),
        Format::Text => decode_text(path, data.to_vec()),
    }
}

/// The file's bytes, mapped rather than read: a large model is not copied
/// into fresh memory (which the system zeroes first), and its pages come
/// from the page cache as the index reads them. Anything but a non-empty
/// regular file is read. graphrw never writes over a file it reads (outputs
/// are renamed into place), so the mapping stays what was read unless
/// another program truncates the file meanwhile.
fn map_file(path: &Path) -> io::Result<Bytes> {
    let file = fs::File::open(path)?;
    let meta = file.metadata()?;
    // Pipes and devices (`<(cat model.pb)`) are read, from the handle
    // already open (opening a FIFO again would wait for another writer);
    // so is an empty file.
    if !meta.is_file() || meta.len() == 0 {
        let mut buf = Vec::new();
        io::Read::read_to_end(&mut &file, &mut buf)?;
        return Ok(Bytes::from(buf));
    }
    // SAFETY: the map is only read, and lives as long as the `Bytes`
    // holding it; the file is not written by this program while mapped.
    let map = unsafe { memmap2::Mmap::map(&file)? };
    Ok(Bytes::from_owner(map))
}

/// Indexes a binary GraphDef; on failure, what is wrong and, when the
/// bytes look like something else, a hint.
pub fn decode_binary(data: Bytes) -> Result<Graph, (String, Option<String>)> {
    Graph::from_bytes(data.clone()).map_err(|e| (e.0, guess_what_it_is(&data)))
}

/// A hint for files that are something else TensorFlow users often have.
fn guess_what_it_is(data: &[u8]) -> Option<String> {
    let head = &data[..data.len().min(512)];
    let text = std::str::from_utf8(head).ok().map(str::trim_start);
    if let Some(text) = text {
        if text.starts_with("node") || text.starts_with("versions") || text.starts_with("library") {
            return Some("this looks like a text-format GraphDef: use --format pbtxt".into());
        }
        if text.starts_with('{') || text.starts_with('[') {
            return Some("this looks like JSON, not a protobuf GraphDef".into());
        }
    }
    if head.starts_with(b"\x89HDF") {
        return Some(
            "this is an HDF5 file (a Keras .h5 model?): freeze it to a GraphDef first".into(),
        );
    }
    if head.starts_with(b"TFL3") || head.get(4..8) == Some(b"TFL3") {
        return Some("this is a TensorFlow Lite flatbuffer, not a GraphDef".into());
    }
    // SavedModel: field 1 is a varint (schema version), field 2 the meta graphs.
    if head.first() == Some(&0x08) && head.get(2) == Some(&0x12) {
        return Some(
            "this looks like a SavedModel (saved_model.pb): freeze it to a GraphDef first".into(),
        );
    }
    None
}

fn descriptor_pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(crate::proto::FILE_DESCRIPTOR_SET)
            .expect("the descriptor set built from proto/ is valid")
    })
}

fn graph_descriptor() -> MessageDescriptor {
    descriptor_pool()
        .get_message_by_name("tensorflow.GraphDef")
        .expect("proto/graph.proto defines tensorflow.GraphDef")
}

fn decode_text(path: &Path, data: Vec<u8>) -> Result<Graph, ReadError> {
    let text = String::from_utf8(data).map_err(|e| ReadError::NotGraphDef {
        path: path.to_path_buf(),
        format: Format::Text,
        reason: format!("byte {} is not UTF-8", e.utf8_error().valid_up_to()),
        // A binary GraphDef starts with its first node: field 1, length-delimited.
        hint: if e.as_bytes().first() == Some(&0x0a) {
            Some("this looks like a binary GraphDef: use --format pb".into())
        } else {
            guess_what_it_is(e.as_bytes())
        },
    })?;
    // A large file is parsed in pieces of whole nodes, on every core, each
    // piece's nodes encoded before the next piece is parsed; a piece that
    // does not parse sends the whole file through the parser below, which
    // says where it is wrong.
    if let Some((nodes, tail)) = text_pieces(&text).and_then(|pieces| parse_pieces(&pieces)) {
        return graph_of_parts(path, nodes, tail);
    }
    let mut message = match DynamicMessage::parse_text_format(graph_descriptor(), &text) {
        Ok(message) => message,
        Err(err) => {
            let span = miette::Diagnostic::labels(&err)
                .and_then(|mut labels| labels.next())
                .map(|label| *label.inner());
            let hint = guess_what_it_is(text.as_bytes()).filter(|h| !h.contains("text-format"));
            let mut message = err.to_string();
            let far =
                |s: &SourceSpan| !crate::snippet::drawable(&text, s.offset(), s.offset() + s.len());
            let span = match span {
                Some(s) if far(&s) => {
                    let (line, col) = crate::snippet::line_col(&text, s.offset());
                    message +=
                        &format!(" (at line {line}, column {col}, too far into its line to show)");
                    None
                }
                span => span,
            };
            return Err(ReadError::Text(Box::new(TextError {
                path: path.to_path_buf(),
                message,
                source_code: NamedSource::new(path.display().to_string(), text),
                span,
                hint,
            })));
        }
    };
    let mut nodes = take_nodes(&mut message);
    let starts: Vec<u32> = (0..=nodes.len() as u32).collect();
    let nodes = crate::par::split_mut(&mut nodes, &starts, 1024, |_, share| encode_nodes(share));
    graph_of_parts(path, nodes.concat(), tail_fields(&prost::Message::encode_to_vec(&message)))
}

/// The graph of a text file's nodes and other top-level fields, unless it
/// has neither nodes nor functions.
fn graph_of_parts(path: &Path, nodes: Vec<Bytes>, tail: Vec<Bytes>) -> Result<Graph, ReadError> {
    if nodes.is_empty() && !tail.iter().any(|f| f.first() == Some(&LIBRARY_TAG)) {
        return Err(ReadError::NotGraphDef {
            path: path.to_path_buf(),
            format: Format::Text,
            reason: "it has neither nodes nor a function library".into(),
            hint: None,
        });
    }
    Ok(Graph::from_nodes(nodes, tail).expect("prost's own encoding of nodes and fields"))
}

/// The first byte of a GraphDef's `library` field (field 2, length-delimited).
const LIBRARY_TAG: u8 = 0x12;

/// Text files smaller than this are parsed whole.
const PIECE: usize = 1 << 20;

/// A large text file cut into pieces of about [`PIECE`] bytes, each a run
/// of whole top-level fields, cut only before a `node` that follows a
/// closed message. `None` (parse it whole) for a small file, or one whose
/// pieces might not mean what the whole does: a top-level field other than
/// `node` given twice (an error whole, two fields apart), a top-level `[`
/// (an extension or a list), or a string or brace left open.
fn text_pieces(text: &str) -> Option<Vec<&str>> {
    if text.len() < 2 * PIECE {
        return None;
    }
    let bytes = text.as_bytes();
    let mut pieces = Vec::new();
    let (mut start, mut depth, mut at) = (0, 0usize, 0);
    // The last significant byte at depth 0, and the top-level fields seen.
    let mut last = 0u8;
    let mut fields: Vec<&[u8]> = Vec::new();
    while at < bytes.len() {
        let b = bytes[at];
        match b {
            b'#' => {
                at += memchr::memchr(b'\n', &bytes[at..]).unwrap_or(bytes.len() - at);
                continue;
            }
            b'"' | b'\'' => {
                at += 1;
                loop {
                    let end = at + memchr::memchr3(b, b'\\', b'\n', &bytes[at..])?;
                    match bytes[end] {
                        // An escape: the next byte is the string's, whatever
                        // it is (a file may end in the middle of one).
                        b'\\' if end + 2 <= bytes.len() => at = end + 2,
                        b'\\' => return None,
                        b'\n' => return None,
                        _ => {
                            at = end + 1;
                            break;
                        }
                    }
                }
                last = b'"';
                continue;
            }
            b'{' | b'<' => depth += 1,
            b'}' | b'>' => depth = depth.checked_sub(1)?,
            b'[' if depth == 0 => return None,
            _ if depth == 0 && (b.is_ascii_alphabetic() || b == b'_') => {
                let end = at
                    + bytes[at..]
                        .iter()
                        .position(|c| !(c.is_ascii_alphanumeric() || *c == b'_'))
                        .unwrap_or(bytes.len() - at);
                let name = &bytes[at..end];
                if name == b"node" {
                    if matches!(last, b'}' | b'>') && at - start >= PIECE {
                        pieces.push(&text[start..at]);
                        start = at;
                    }
                } else if matches!(last, 0 | b'}' | b'>' | b'"') || last.is_ascii_alphanumeric() {
                    // A field name (an enum value or number after `:` is
                    // never `node`, and repeats harmlessly here only if it
                    // is also a field name).
                    if fields.contains(&name) {
                        return None;
                    }
                    fields.push(name);
                }
                last = b'a';
                at = end;
                continue;
            }
            _ => {}
        }
        if depth == 0 && !b.is_ascii_whitespace() {
            last = b;
        }
        at += 1;
    }
    if depth != 0 {
        return None;
    }
    pieces.push(&text[start..]);
    (pieces.len() > 1).then_some(pieces)
}

/// Parses the pieces of a text file (on every core, each piece's nodes
/// encoded and its parse dropped before the next is parsed): the nodes and
/// the other top-level fields, or `None` when a piece does not parse.
fn parse_pieces(pieces: &[&str]) -> Option<(Vec<Bytes>, Vec<Bytes>)> {
    let parsed = crate::par::shares(pieces, 2, |_, share| {
        let graph = own_descriptor("tensorflow.GraphDef");
        let mut nodes = Vec::new();
        let mut rest = Vec::new();
        for piece in share {
            let mut message = DynamicMessage::parse_text_format(graph.clone(), piece).ok()?;
            nodes.extend(encode_nodes(&mut take_nodes(&mut message)));
            prost::Message::encode(&message, &mut rest).expect("a Vec grows");
        }
        Some((nodes, rest))
    });
    let mut nodes = Vec::new();
    let mut rest = Vec::new();
    for share in parsed {
        let (share_nodes, share_rest) = share?;
        nodes.extend(share_nodes);
        rest.extend(share_rest);
    }
    Some((nodes, tail_fields(&rest)))
}

/// The nodes of a parsed GraphDef, taken out of it.
fn take_nodes(message: &mut DynamicMessage) -> Vec<prost_reflect::Value> {
    match message.take_field_by_name("node") {
        Some(prost_reflect::Value::List(nodes)) => nodes,
        _ => Vec::new(),
    }
}

/// Parsed nodes, each encoded as prost encodes a NodeDef (dynamic messages
/// keep maps in hash order, prost's types sort them: the binary form is
/// deterministic), each dropped once encoded. Node by node: the whole
/// GraphDef in prost's types at once took a 200k-node graph a GB of fresh
/// pages, most of the time going to zeroing them.
fn encode_nodes(nodes: &mut [prost_reflect::Value]) -> Vec<Bytes> {
    use prost::Message;
    nodes
        .iter_mut()
        .map(|node| {
            let prost_reflect::Value::Message(node) =
                std::mem::replace(node, prost_reflect::Value::Bool(false))
            else {
                unreachable!("GraphDef.node holds messages")
            };
            let def = crate::proto::NodeDef::decode(node.encode_to_vec().as_slice())
                .expect("a message of NodeDef's own descriptor decodes as NodeDef");
            Bytes::from(def.encode_to_vec())
        })
        .collect()
}

/// A GraphDef's fields other than its nodes (`encoded`: them, encoded in
/// any order, merged as protobuf merges), each as prost encodes it.
fn tail_fields(encoded: &[u8]) -> Vec<Bytes> {
    use prost::Message;
    let rest = crate::proto::GraphDef::decode(encoded)
        .expect("a message of GraphDef's own descriptor decodes as GraphDef");
    let rest = Bytes::from(rest.encode_to_vec());
    crate::wire::fields(&rest)
        .map(|f| f.map(|f| rest.slice(f.start..f.end)).expect("prost's own encoding"))
        .collect()
}

/// The text format of `graph`, as TensorFlow's `text_format` reads it.
/// Node by node, on every core (the whole graph as one dynamic message took
/// a GB for a 200k-node graph), then the other fields: nodes are field 1,
/// printed first.
pub fn encode_text(graph: &Graph) -> Result<String, io::Error> {
    let invalid = |e| io::Error::new(io::ErrorKind::InvalidData, e);
    let ids: Vec<crate::graph::NodeId> = graph.ids().collect();
    let parts = crate::par::shares(&ids, 4096, |_, ids| -> io::Result<String> {
        let node = own_descriptor("tensorflow.NodeDef");
        let mut out = String::new();
        for &id in ids {
            let message =
                DynamicMessage::decode(node.clone(), graph.node_raw(id)).map_err(invalid)?;
            crate::text::print_item("node", &message, &mut out);
        }
        Ok(out)
    });
    let mut text = String::new();
    for part in parts {
        text.push_str(&part?);
    }
    let rest = DynamicMessage::decode(graph_descriptor(), graph.tail().concat().as_slice())
        .map_err(invalid)?;
    text.push_str(&crate::text::print(&rest));
    Ok(text)
}

/// A message's descriptor from a pool of the calling thread's own: every
/// dynamic message holds a count of references to its pool, and two cores
/// counting on one pool's spend more time passing it between them than
/// parsing or printing.
fn own_descriptor(name: &str) -> MessageDescriptor {
    DescriptorPool::decode(crate::proto::FILE_DESCRIPTOR_SET)
        .expect("the descriptor set built from proto/ is valid")
        .get_message_by_name(name)
        .expect("proto/ defines the message")
}

/// Serializes `graph` in `format` to `out`.
pub fn encode<W: Write + ?Sized>(graph: &Graph, format: Format, out: &mut W) -> io::Result<()> {
    match format {
        Format::Binary => graph.encode(out),
        Format::Text => out.write_all(encode_text(graph)?.as_bytes()),
    }
}

/// Writes `graph` to `path` (`-` is standard output) in `format`, or in the
/// format its extension names. The file appears whole or not at all: the
/// bytes go to a temporary file in the same directory, renamed over `path`.
pub fn write_graph(path: &Path, graph: &Graph, format: Option<Format>) -> Result<(), WriteError> {
    let format = format.unwrap_or_else(|| Format::from_path(path));
    write_with(path, |out| encode(graph, format, out))
}

/// Writes what `fill` writes to `path` (`-` is standard output), whole or
/// not at all (see [`write_atomic`]).
pub fn write_with(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<(), WriteError> {
    let err = |source| WriteError { path: path.to_path_buf(), source };
    if path == Path::new("-") {
        let mut out = BufWriter::with_capacity(1 << 20, io::stdout().lock());
        // A reader that stopped reading (`| head`) wants no more: the
        // rest is not written, and that is not an error (as for any Unix
        // tool that a closed pipe stops).
        return match fill(&mut out).and_then(|()| out.flush()) {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
            done => done.map_err(err),
        };
    }
    write_atomic(path, |out| fill(out)).map_err(err)
}

/// Writes a file atomically: `fill` writes into a temporary file beside
/// `path`, which then replaces `path`. On any error `path` is untouched.
pub fn write_atomic(
    path: &Path,
    fill: impl FnOnce(&mut BufWriter<&mut fs::File>) -> io::Result<()>,
) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut builder = tempfile::Builder::new();
    builder.prefix(".graphrw-").suffix(".tmp");
    // A new file gets the permissions any new file would (0666 less the
    // umask), not the temporary file's 0600; a replaced file keeps its own.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(path).map_or(0o666, |m| m.permissions().mode() & 0o7777);
        builder.permissions(fs::Permissions::from_mode(mode));
    }
    let mut temp = builder.tempfile_in(dir)?;
    {
        let mut out = BufWriter::with_capacity(1 << 20, temp.as_file_mut());
        fill(&mut out)?;
        out.flush()?;
    }
    temp.as_file().sync_all()?;
    temp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
