//! The flat form programs are lowered to.
//!
//! A node holds every connector of its fleet in memory, each with about a
//! dozen small programs, so their layout is what the memory budget is spent
//! on. Instead of a tree of boxed nodes per program, the programs of one
//! connector share one arena: operations are small `Copy` values that name
//! their operands by index, and every key, secret name and template text is
//! a range of one string (repeated names are stored once). A program is the
//! index of its root operation.

use serde_json::Value;

use super::ast::BinaryOp;
use super::functions::Func;

/// Where a reference starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Root {
    Payload,
    Lookup,
    Processed,
    Secret,
}

impl Root {
    pub(crate) fn parse(name: &str) -> Option<Root> {
        Some(match name {
            "payload" => Root::Payload,
            "lookup" => Root::Lookup,
            "processed" => Root::Processed,
            "secret" => Root::Secret,
            _ => return None,
        })
    }
}

/// A range of [`Code::text`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Str {
    start: u32,
    len: u32,
}

/// A range of [`Code::args`] or [`Code::steps`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Slice {
    start: u32,
    len: u32,
}

impl Slice {
    pub fn start(self) -> u32 {
        self.start
    }

    fn range(self) -> std::ops::Range<usize> {
        self.start as usize..(self.start + self.len) as usize
    }
}

/// An operation; operands are indices into [`Code::ops`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Op {
    /// An index into [`Code::consts`].
    Const(u32),
    /// Literal text of a template.
    Text(Str),
    /// A reference; its path is a slice of [`Code::steps`].
    Ref(Root, Slice),
    Secret(Str),
    Not(u32),
    Neg(u32),
    And(u32, u32),
    Or(u32, u32),
    Binary(BinaryOp, u32, u32),
    /// `if(c, a, b)`: three consecutive [`Code::args`] from this index;
    /// only the chosen branch runs.
    If(u32),
    /// `coalesce(...)` and `default(a, b)`: stops at the first non-null.
    Coalesce(Slice),
    Call(Func, Slice),
    /// Parts in order; [`Op::Text`] parts are copied as they are.
    Template(Slice),
}

/// A resolved path step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    Key(Str),
    Index(i64),
}

/// Programs in one arena. Immutable once built.
#[derive(Clone, Debug, Default)]
pub(crate) struct Code {
    ops: Box<[Op]>,
    args: Box<[u32]>,
    steps: Box<[Step]>,
    consts: Box<[Value]>,
    text: Box<str>,
}

impl Code {
    pub fn op(&self, index: u32) -> Op {
        self.ops[index as usize]
    }

    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    pub fn args(&self, slice: Slice) -> &[u32] {
        &self.args[slice.range()]
    }

    /// The three operands of an [`Op::If`].
    pub fn branches(&self, start: u32) -> [u32; 3] {
        let start = start as usize;
        [self.args[start], self.args[start + 1], self.args[start + 2]]
    }

    pub fn steps(&self, slice: Slice) -> &[Step] {
        &self.steps[slice.range()]
    }

    pub fn constant(&self, index: u32) -> &Value {
        &self.consts[index as usize]
    }

    pub fn str(&self, s: Str) -> &str {
        &self.text[s.start as usize..(s.start + s.len) as usize]
    }

    /// Calls `f` on every operation reachable from `root`.
    pub fn visit(&self, root: u32, f: &mut impl FnMut(Op)) {
        let op = self.op(root);
        f(op);
        match op {
            Op::Const(_) | Op::Text(_) | Op::Ref(..) | Op::Secret(_) => {}
            Op::Not(a) | Op::Neg(a) => self.visit(a, f),
            Op::And(a, b) | Op::Or(a, b) | Op::Binary(_, a, b) => {
                self.visit(a, f);
                self.visit(b, f);
            }
            Op::If(start) => self.branches(start).into_iter().for_each(|b| self.visit(b, f)),
            Op::Coalesce(args) | Op::Call(_, args) | Op::Template(args) => {
                self.args(args).iter().for_each(|&a| self.visit(a, f))
            }
        }
    }
}

/// Appends programs to an arena.
#[derive(Debug, Default)]
pub(crate) struct CodeBuilder {
    ops: Vec<Op>,
    args: Vec<u32>,
    steps: Vec<Step>,
    consts: Vec<Value>,
    text: String,
}

/// How far a builder had got, to undo a program that failed to compile.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Mark([usize; 5]);

impl CodeBuilder {
    pub fn push(&mut self, op: Op) -> u32 {
        self.ops.push(op);
        index(self.ops.len() - 1)
    }

    pub fn constant(&mut self, value: Value) -> u32 {
        self.consts.push(value);
        let op = Op::Const(index(self.consts.len() - 1));
        self.push(op)
    }

    /// Stores `s` once: an occurrence already in the arena is reused.
    pub fn str(&mut self, s: &str) -> Str {
        let start = self.text.find(s).unwrap_or_else(|| {
            self.text.push_str(s);
            self.text.len() - s.len()
        });
        Str { start: index(start), len: index(s.len()) }
    }

    pub fn args(&mut self, operands: &[u32]) -> Slice {
        let start = index(self.args.len());
        self.args.extend_from_slice(operands);
        Slice { start, len: index(operands.len()) }
    }

    pub fn steps(&mut self, steps: impl IntoIterator<Item = Step>) -> Slice {
        let start = index(self.steps.len());
        self.steps.extend(steps);
        Slice { start, len: index(self.steps.len()) - start }
    }

    /// Operations in the arena.
    pub fn ops_len(&self) -> usize {
        self.ops.len()
    }

    /// Operations appended since `mark`.
    pub fn ops_since(&self, Mark([ops, ..]): Mark) -> usize {
        self.ops.len() - ops
    }

    pub fn mark(&self) -> Mark {
        Mark([self.ops.len(), self.args.len(), self.steps.len(), self.consts.len(), self.text.len()])
    }

    /// Drops everything appended since `mark`.
    pub fn reset(&mut self, Mark([ops, args, steps, consts, text]): Mark) {
        self.ops.truncate(ops);
        self.args.truncate(args);
        self.steps.truncate(steps);
        self.consts.truncate(consts);
        self.text.truncate(text);
    }

    /// The arena, with no spare capacity.
    pub fn finish(self) -> Code {
        Code {
            ops: self.ops.into(),
            args: self.args.into(),
            steps: self.steps.into(),
            consts: self.consts.into(),
            text: self.text.into(),
        }
    }
}

/// Arena indices are `u32`: a set holds at most `MAX_SET_OPS` operations
/// (and proportionate names and steps), far below 4 G.
fn index(n: usize) -> u32 {
    u32::try_from(n).expect("program arena exceeds u32 indices")
}
