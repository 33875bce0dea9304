//! Evaluating compiled programs.
//!
//! The evaluator walks a program in its arena with a budget of steps and
//! output bytes. References borrow from the scope; only values an expression
//! produces are allocated. Errors are values, never panics.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::ast::BinaryOp;
use super::code::{Code, Op, Root, Step};
use super::error::EvalError;
use super::functions;
use super::value::{Val, equal, number, render_into, truthy, type_name};

/// Where `$secret.NAME` values come from.
pub trait SecretSource: Sync {
    fn secret(&self, name: &str) -> Option<&str>;
}

impl SecretSource for HashMap<String, String> {
    fn secret(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

/// A source without secrets.
pub struct NoSecrets;

impl SecretSource for NoSecrets {
    fn secret(&self, _: &str) -> Option<&str> {
        None
    }
}

/// What an evaluation can read.
pub struct Scope<'a> {
    pub payload: &'a Value,
    pub lookup: Option<&'a Value>,
    pub processed: &'a Map<String, Value>,
    pub secrets: &'a dyn SecretSource,
}

/// Bounds on one evaluation.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Operations (nodes visited) per evaluation.
    pub max_steps: u64,
    /// Bytes of any text or JSON the expression produces.
    pub max_output_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { max_steps: 100_000, max_output_bytes: 1 << 20 }
    }
}

pub(crate) struct Evaluator<'a, 's> {
    pub code: &'s Code,
    pub scope: &'s Scope<'a>,
    pub limits: Limits,
    pub steps: u64,
}

static NULL: Value = Value::Null;

impl<'a> Evaluator<'a, '_> {
    fn step(&mut self) -> Result<(), EvalError> {
        self.steps += 1;
        if self.steps > self.limits.max_steps {
            return Err(EvalError::TooManySteps(self.limits.max_steps));
        }
        Ok(())
    }

    fn check_size(&self, value: &Value) -> Result<(), EvalError> {
        let size = match value {
            Value::String(s) => s.len(),
            Value::Array(a) => a.len() * 8,
            _ => 0,
        };
        if size > self.limits.max_output_bytes {
            return Err(EvalError::OutputTooLarge(self.limits.max_output_bytes));
        }
        Ok(())
    }

    /// Evaluates the operation at `index` and what it reaches.
    pub fn eval(&mut self, index: u32) -> Result<Val<'a>, EvalError> {
        self.step()?;
        let code = self.code;
        Ok(match code.op(index) {
            Op::Const(value) => Val::Owned(code.constant(value).clone()),
            Op::Text(text) => Val::Owned(Value::String(code.str(text).to_owned())),
            Op::Ref(root, steps) => self.reference(root, code.steps(steps)),
            Op::Secret(name) => {
                let name = code.str(name);
                match self.scope.secrets.secret(name) {
                    Some(value) => Val::Owned(Value::String(value.to_owned())),
                    None => return Err(EvalError::MissingSecret(name.to_owned())),
                }
            }
            Op::Not(operand) => Val::Owned(Value::Bool(!truthy(&*self.eval(operand)?))),
            Op::Neg(operand) => match &*self.eval(operand)? {
                Value::Number(n) => match n.as_i64() {
                    Some(i) if i != i64::MIN => Val::Owned(Value::from(-i)),
                    _ => Val::Owned(number(-n.as_f64().unwrap_or(0.0))?),
                },
                other => return Err(EvalError::type_error(format!("cannot negate {}", type_name(other)))),
            },
            Op::And(lhs, rhs) => Val::Owned(Value::Bool(truthy(&*self.eval(lhs)?) && truthy(&*self.eval(rhs)?))),
            Op::Or(lhs, rhs) => Val::Owned(Value::Bool(truthy(&*self.eval(lhs)?) || truthy(&*self.eval(rhs)?))),
            Op::Binary(op, lhs, rhs) => {
                let (lhs, rhs) = (self.eval(lhs)?, self.eval(rhs)?);
                let value = binary(op, &lhs, &rhs)?;
                self.check_size(&value)?;
                Val::Owned(value)
            }
            Op::If(start) => {
                let [condition, then, otherwise] = code.branches(start);
                if truthy(&*self.eval(condition)?) { self.eval(then)? } else { self.eval(otherwise)? }
            }
            Op::Coalesce(options) => {
                for &option in code.args(options) {
                    let value = self.eval(option)?;
                    if !value.is_null() {
                        return Ok(value);
                    }
                }
                Val::Owned(Value::Null)
            }
            Op::Call(func, args) => {
                let args = code.args(args);
                let mut values = Vec::with_capacity(args.len());
                for &arg in args {
                    values.push(self.eval(arg)?);
                }
                let value = functions::call(func, values)?;
                self.check_size(&value)?;
                value
            }
            Op::Template(parts) => {
                let mut out = String::new();
                for &part in code.args(parts) {
                    match code.op(part) {
                        Op::Text(text) => out.push_str(code.str(text)),
                        _ => render_into(&mut out, &*self.eval(part)?),
                    }
                    if out.len() > self.limits.max_output_bytes {
                        return Err(EvalError::OutputTooLarge(self.limits.max_output_bytes));
                    }
                }
                Val::Owned(Value::String(out))
            }
        })
    }

    fn reference(&self, root: Root, steps: &[Step]) -> Val<'a> {
        let (scope, code) = (self.scope, self.code);
        let (start, steps): (&'a Value, &[Step]) = match root {
            Root::Payload => (scope.payload, steps),
            Root::Lookup => (scope.lookup.unwrap_or(&NULL), steps),
            Root::Processed => match steps.split_first() {
                Some((Step::Key(name), rest)) => (scope.processed.get(code.str(*name)).unwrap_or(&NULL), rest),
                _ => (&NULL, &[]),
            },
            Root::Secret => (&NULL, &[]),
        };
        let mut current = start;
        for step in steps {
            current = match (step, current) {
                (Step::Key(key), Value::Object(map)) => map.get(code.str(*key)).unwrap_or(&NULL),
                (Step::Index(index), Value::Array(items)) => {
                    let position = if *index < 0 { items.len() as i64 + index } else { *index };
                    usize::try_from(position).ok().and_then(|p| items.get(p)).unwrap_or(&NULL)
                }
                _ => &NULL,
            };
        }
        Val::Borrowed(current)
    }
}

/// Arithmetic and comparison. `+` adds numbers or joins two texts;
/// ordering compares two numbers or two texts and is false otherwise.
fn binary(op: BinaryOp, lhs: &Value, rhs: &Value) -> Result<Value, EvalError> {
    use BinaryOp::*;
    Ok(match op {
        Eq => Value::Bool(equal(lhs, rhs)),
        Ne => Value::Bool(!equal(lhs, rhs)),
        Lt | Le | Gt | Ge => {
            let ordering = match (lhs, rhs) {
                (Value::Number(a), Value::Number(b)) => a.as_f64().partial_cmp(&b.as_f64()),
                (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
                _ => None,
            };
            Value::Bool(ordering.is_some_and(|o| match op {
                Lt => o.is_lt(),
                Le => o.is_le(),
                Gt => o.is_gt(),
                _ => o.is_ge(),
            }))
        }
        Add | Sub | Mul | Div => match (lhs, rhs) {
            (Value::Number(a), Value::Number(b)) => arithmetic(op, a, b)?,
            (Value::String(a), Value::String(b)) if op == Add => Value::String(format!("{a}{b}")),
            _ => {
                let hint = if op == Add { "; join text with concat()" } else { "" };
                return Err(EvalError::type_error(format!(
                    "cannot apply `{}` to {} and {}{hint}",
                    op.symbol(),
                    type_name(lhs),
                    type_name(rhs)
                )));
            }
        },
        And | Or => unreachable!("short-circuit operators are lowered separately"),
    })
}

fn arithmetic(op: BinaryOp, a: &serde_json::Number, b: &serde_json::Number) -> Result<Value, EvalError> {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        let exact = match op {
            BinaryOp::Add => x.checked_add(y),
            BinaryOp::Sub => x.checked_sub(y),
            BinaryOp::Mul => x.checked_mul(y),
            _ => x.checked_rem(y).filter(|r| *r == 0).and_then(|_| x.checked_div(y)),
        };
        if let Some(result) = exact {
            return Ok(Value::from(result));
        }
    }
    let (x, y) = (a.as_f64().unwrap_or(0.0), b.as_f64().unwrap_or(0.0));
    number(match op {
        BinaryOp::Add => x + y,
        BinaryOp::Sub => x - y,
        BinaryOp::Mul => x * y,
        _ if y == 0.0 => return Err(EvalError::type_error("division by zero")),
        _ => x / y,
    })
}
