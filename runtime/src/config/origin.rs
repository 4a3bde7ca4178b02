//! Where a configuration value came from, and errors that say so in a
//! user's words: the key, its origin (file, environment variable, command
//! line) and what it takes, never a source location or a Rust type name.

use figment::error::{Actual, Kind};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};

use super::keys::runtime_key;

/// The name of the command-line provider's values.
const COMMAND_LINE: &str = "the command line";

/// `--set key=value` and the binary's own options, as a provider whose
/// values say they came from the command line.
pub(crate) struct CommandLine(pub(crate) Vec<(String, Value)>);

impl Provider for CommandLine {
    fn metadata(&self) -> Metadata {
        Metadata::named(COMMAND_LINE)
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut dict = Dict::new();
        for (key, value) in &self.0 {
            if let Value::Dict(_, nested) = figment::util::nest(key, value.clone()) {
                dict = merge(dict, nested);
            }
        }
        Ok(Profile::Default.collect(dict))
    }
}

/// `b` over `a`, nested dictionaries merged key by key.
fn merge(mut a: Dict, b: Dict) -> Dict {
    for (k, v) in b {
        let merged = match (a.remove(&k), v) {
            (Some(Value::Dict(_, x)), Value::Dict(tag, y)) => Value::Dict(tag, merge(x, y)),
            (_, v) => v,
        };
        a.insert(k, merged);
    }
    a
}

/// Parses a command-line value: a whole number (up to `u64::MAX`), a
/// number, a boolean or a TOML array or table, else the text itself.
pub(crate) fn parse_value(raw: &str) -> Value {
    let raw = raw.trim();
    if let Ok(n) = raw.parse::<u64>() {
        return Value::from(n);
    }
    if let Ok(n) = raw.parse::<i64>() {
        return Value::from(n);
    }
    match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut t) => match t.remove("v") {
            Some(v) => Value::serialize(v).unwrap_or_else(|_| Value::from(raw.to_owned())),
            None => Value::from(raw.to_owned()),
        },
        Err(_) => Value::from(raw.to_owned()),
    }
}

/// Where `key`'s value came from, in words.
pub(crate) fn origin(figment: &Figment, key: &str) -> String {
    match figment.find_metadata(key) {
        Some(meta) => describe(meta, key),
        None => "unset".to_owned(),
    }
}

fn describe(meta: &Metadata, key: &str) -> String {
    if let Some(figment::Source::File(path)) = &meta.source {
        return format!("in {}", path.display());
    }
    if meta.name == COMMAND_LINE {
        return format!("on {COMMAND_LINE}");
    }
    if meta.name.contains("environment") {
        // As `Env::prefixed("WEIR_").split("__")` reads it.
        return format!(
            "from the environment variable WEIR_{}",
            key.to_ascii_uppercase().replace('.', "__")
        );
    }
    "the default".to_owned()
}

/// A value's type in words.
fn actual(a: &Actual) -> String {
    match a {
        Actual::Str(s) => format!("the text {s:?}"),
        Actual::Signed(n) => format!("the number {n}"),
        Actual::Unsigned(n) => format!("the number {n}"),
        Actual::Float(f) => format!("the number {f}"),
        Actual::Bool(b) => format!("{b}"),
        Actual::Map => "a table".to_owned(),
        Actual::Seq => "a list".to_owned(),
        other => other.to_string(),
    }
}

/// What serde expects, in words: `u64` becomes "a whole number".
fn plain(expected: &str) -> String {
    let e = expected.trim();
    match e {
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => "a whole number, at least 0".to_owned(),
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "a whole number".to_owned(),
        "f32" | "f64" => "a number".to_owned(),
        "bool" | "a boolean" => "true or false".to_owned(),
        "a string" | "a borrowed string" | "string" => "text".to_owned(),
        _ => e.to_owned(),
    }
}

/// A figment error on the merged configuration, in a user's words.
pub(crate) fn explain(figment: &Figment, e: figment::Error) -> String {
    let key = e.path.join(".");
    let takes = runtime_key(&key).map(|k| k.takes.to_owned());
    let what = match &e.kind {
        Kind::InvalidType(found, expected) | Kind::InvalidValue(found, expected) => format!(
            "takes {}, not {}",
            takes.unwrap_or_else(|| plain(expected)),
            actual(found)
        ),
        Kind::UnknownVariant(found, variants) => format!(
            "takes {}, not {found:?}",
            takes.unwrap_or_else(|| variants.join(", "))
        ),
        Kind::MissingField(field) => return format!("`{key}.{field}` is not set"),
        Kind::UnknownField(field, _) => {
            return format!(
                "unknown configuration key `{key}.{field}`; `run --help` lists every key"
            )
        }
        Kind::Message(m) => m.clone(),
        other => other.to_string(),
    };
    if key.is_empty() {
        return what;
    }
    format!("`{key}` ({}) {what}", origin(figment, &key))
}
