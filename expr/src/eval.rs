//! Evaluating compiled programs.
//!
//! The evaluator walks a program in its arena, drawing on a [`Budget`] of
//! steps and bytes that every program of one execution shares; each value
//! it produces is claimed before it is built. References borrow from the
//! scope; only values an expression produces are allocated. Errors are
//! values, never panics. The walk recurses once per level of the program,
//! which the parser keeps within `parser::MAX_DEPTH`.

use std::collections::HashMap;

use serde_json::Value;

use super::ast::BinaryOp;
use super::budget::{Budget, Output};
use super::code::{Code, Op, Root, Step};
use super::error::EvalError;
use super::functions;
use super::payload::Payload;
use super::processed::Processed;
use super::value::{NULL, Val, equal, number, truthy, type_name};

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
    pub payload: Payload<'a>,
    pub lookup: Option<&'a Value>,
    pub processed: &'a Processed<'a>,
    pub secrets: &'a dyn SecretSource,
}

pub(crate) struct Evaluator<'a, 's, 'b> {
    pub code: &'s Code,
    pub scope: &'s Scope<'a>,
    pub budget: &'b mut Budget,
}

impl<'a> Evaluator<'a, '_, '_> {
    /// Evaluates the operation at `index` and what it reaches.
    ///
    /// Each kind of operation has its own function, so the frame that
    /// recurses holds only what its kind needs (a debug build otherwise
    /// gives every arm's temporaries a slot in one frame: ~6 KiB a level).
    pub fn eval(&mut self, index: u32) -> Result<Val<'a>, EvalError> {
        self.budget.step()?;
        let code = self.code;
        match code.op(index) {
            Op::Const(value) => Ok(Val::Owned(self.budget.copy(code.constant(value))?)),
            Op::Text(text) => self.text(code.str(text)),
            Op::Ref(root, steps) => Ok(self.reference(root, code.steps(steps))),
            Op::Secret(name) => self.secret(code.str(name)),
            Op::Not(operand) => Ok(Val::Owned(Value::Bool(!self.truthy(operand)?))),
            Op::Neg(operand) => self.negate(operand),
            Op::And(lhs, rhs) => Ok(Val::Owned(Value::Bool(self.truthy(lhs)? && self.truthy(rhs)?))),
            Op::Or(lhs, rhs) => Ok(Val::Owned(Value::Bool(self.truthy(lhs)? || self.truthy(rhs)?))),
            Op::Binary(op, lhs, rhs) => self.binary(op, lhs, rhs),
            Op::If(start) => {
                let [condition, then, otherwise] = code.branches(start);
                if self.truthy(condition)? { self.eval(then) } else { self.eval(otherwise) }
            }
            Op::Coalesce(options) => self.coalesce(code.args(options)),
            Op::Call(func, args) => self.call(func, code.args(args)),
            Op::Template(parts) => self.template(code.args(parts)),
        }
    }

    fn truthy(&mut self, index: u32) -> Result<bool, EvalError> {
        Ok(truthy(&*self.eval(index)?))
    }

    fn text(&mut self, text: &str) -> Result<Val<'a>, EvalError> {
        self.budget.claim(text.len())?;
        Ok(Val::Owned(Value::String(text.to_owned())))
    }

    fn secret(&mut self, name: &str) -> Result<Val<'a>, EvalError> {
        match self.scope.secrets.secret(name) {
            Some(value) => {
                self.budget.claim(value.len())?;
                Ok(Val::Owned(Value::String(value.to_owned())))
            }
            None => Err(EvalError::MissingSecret(name.to_owned())),
        }
    }

    fn negate(&mut self, operand: u32) -> Result<Val<'a>, EvalError> {
        match &*self.eval(operand)? {
            Value::Number(n) => match n.as_i64() {
                Some(i) if i != i64::MIN => Ok(Val::Owned(Value::from(-i))),
                _ => Ok(Val::Owned(number(-n.as_f64().unwrap_or(0.0))?)),
            },
            other => Err(EvalError::type_error(format!("cannot negate {}", type_name(other)))),
        }
    }

    fn binary(&mut self, op: BinaryOp, lhs: u32, rhs: u32) -> Result<Val<'a>, EvalError> {
        let lhs = self.eval(lhs)?;
        let rhs = self.eval(rhs)?;
        Ok(Val::Owned(binary(op, &lhs, &rhs, self.budget)?))
    }

    fn coalesce(&mut self, options: &[u32]) -> Result<Val<'a>, EvalError> {
        for &option in options {
            let value = self.eval(option)?;
            if !value.is_null() {
                return Ok(value);
            }
        }
        Ok(Val::Owned(Value::Null))
    }

    fn call(&mut self, func: functions::Func, args: &[u32]) -> Result<Val<'a>, EvalError> {
        let mut values = Vec::with_capacity(args.len());
        for &arg in args {
            values.push(self.eval(arg)?);
        }
        functions::call(func, values, self.budget)
    }

    fn template(&mut self, parts: &[u32]) -> Result<Val<'a>, EvalError> {
        let code = self.code;
        // Expressions first, so their own claims come before the text
        // grows; text parts are copied as they are.
        let mut values = Vec::with_capacity(parts.len());
        for &part in parts {
            if !matches!(code.op(part), Op::Text(_)) {
                values.push(self.eval(part)?);
            }
        }
        let mut values = values.iter();
        let mut out = Output::new(self.budget);
        for &part in parts {
            match code.op(part) {
                Op::Text(text) => out.push_str(code.str(text))?,
                _ => {
                    if let Some(value) = values.next() {
                        out.render(value)?;
                    }
                }
            }
        }
        Ok(Val::Owned(Value::String(out.finish())))
    }

    /// The owned value of the operation at `index`: a borrowed result is
    /// copied, and the copy paid for.
    pub fn eval_owned(&mut self, index: u32) -> Result<Value, EvalError> {
        match self.eval(index)? {
            Val::Borrowed(value) => self.budget.copy(value),
            Val::Owned(value) => Ok(value),
        }
    }

    fn reference(&self, root: Root, steps: &[Step]) -> Val<'a> {
        let (scope, code) = (self.scope, self.code);
        let (start, steps): (&'a Value, &[Step]) = match root {
            Root::Payload => scope.payload.resolve(code, steps),
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
fn binary(op: BinaryOp, lhs: &Value, rhs: &Value, budget: &mut Budget) -> Result<Value, EvalError> {
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
            (Value::String(a), Value::String(b)) if op == Add => {
                let mut out = Output::with_capacity(budget, a.len() + b.len())?;
                out.push_str(a)?;
                out.push_str(b)?;
                Value::String(out.finish())
            }
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
