//! `hookplane expr eval|check`: try expressions locally before saving a
//! connector.

use std::collections::HashMap;

use anyhow::Context as _;
use hookplane_expr::{self as expr, Limits, Processed, Scope, SourceKind};
use serde_json::{Map, Value};

/// Arguments shared by `eval` and `check`.
#[derive(clap::Args)]
pub struct ExprArgs {
    /// The expression or template, e.g. 'concat($payload.a, "-")'.
    pub source: String,
    /// Read the source as one expression (like a condition) instead of a
    /// value that may be a template.
    #[arg(long)]
    pub condition: bool,
    /// The payload as JSON.
    #[arg(long, default_value = "{}")]
    pub payload: String,
    /// The lookup response as JSON.
    #[arg(long)]
    pub lookup: Option<String>,
    /// Earlier mappings' results (`$processed`) as a JSON object.
    #[arg(long)]
    pub processed: Option<String>,
    /// A secret for `$secret.NAME`, as NAME=VALUE; repeatable.
    #[arg(long = "secret", value_name = "NAME=VALUE")]
    pub secrets: Vec<String>,
}

fn kind(args: &ExprArgs) -> SourceKind {
    if args.condition { SourceKind::Expression } else { SourceKind::Template }
}

/// Prints each compile error with its position and a caret under it.
fn report(source: &str, errors: &expr::CompileErrors) {
    for error in errors.iter() {
        eprintln!("error: {error}");
        if let Some(line) = source.lines().nth(error.line as usize - 1) {
            eprintln!("  {line}");
            eprintln!("  {}^", " ".repeat(error.column as usize - 1));
        }
    }
}

/// `expr check`: exit 0 when the source compiles.
pub fn check(args: &ExprArgs) -> anyhow::Result<bool> {
    match expr::check(&args.source, kind(args)) {
        Ok(()) => {
            println!("ok");
            Ok(true)
        }
        Err(errors) => {
            report(&args.source, &errors);
            Ok(false)
        }
    }
}

/// `expr eval`: prints the result as JSON.
pub fn eval(args: &ExprArgs) -> anyhow::Result<bool> {
    let program = match expr::compile(&args.source, kind(args)) {
        Ok(program) => program,
        Err(errors) => {
            report(&args.source, &errors);
            return Ok(false);
        }
    };
    let payload: Value = serde_json::from_str(&args.payload).context("--payload is not valid JSON")?;
    let lookup: Option<Value> =
        args.lookup.as_deref().map(serde_json::from_str).transpose().context("--lookup is not valid JSON")?;
    let processed: Map<String, Value> = match args.processed.as_deref() {
        Some(text) => serde_json::from_str(text).context("--processed must be a JSON object")?,
        None => Map::new(),
    };
    let mut secrets = HashMap::new();
    for pair in &args.secrets {
        let (name, value) = pair.split_once('=').with_context(|| format!("--secret `{pair}` must be NAME=VALUE"))?;
        secrets.insert(name.to_owned(), value.to_owned());
    }
    let processed: Processed = processed.iter().map(|(name, value)| (name.as_str(), value.clone())).collect();
    let scope = Scope { payload: (&payload).into(), lookup: lookup.as_ref(), processed: &processed, secrets: &secrets };
    match program.eval(&scope, &Limits::default()) {
        Ok(value) => {
            println!("{}", serde_json::to_string_pretty(&value)?);
            Ok(true)
        }
        Err(err) => {
            eprintln!("error: {err}");
            Ok(false)
        }
    }
}
