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
    let message = match DynamicMessage::parse_text_format(graph_descriptor(), &text) {
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
    // Dynamic messages keep maps in hash order; going through prost's types
    // (sorted maps) makes the binary form deterministic.
    let encoded = prost::Message::encode_to_vec(&message);
    let graph = <crate::proto::GraphDef as prost::Message>::decode(encoded.as_slice())
        .expect("a message of GraphDef's own descriptor decodes as GraphDef");
    if graph.node.is_empty() && graph.library.is_none() {
        return Err(ReadError::NotGraphDef {
            path: path.to_path_buf(),
            format: Format::Text,
            reason: "it has neither nodes nor a function library".into(),
            hint: None,
        });
    }
    Ok(Graph::from_def(&graph))
}

/// The text format of `graph`, as TensorFlow's `text_format` reads it.
pub fn encode_text(graph: &Graph) -> Result<String, io::Error> {
    let mut binary = Vec::with_capacity(graph.encoded_len());
    graph.encode(&mut binary)?;
    let message = DynamicMessage::decode(graph_descriptor(), binary.as_slice())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    Ok(crate::text::print(&message))
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
