//! `--cond`: a Go-like expression language over arguments and locals.
//!
//! Free of aya and tokio. Parsed and type-checked against the DWARF types
//! when the probe is attached (errors point at the column), evaluated on the
//! captured values in userspace; the top-level `&&` terms that compare a
//! scalar or a string argument with a literal are also compiled into kernel
//! filters, so hits that fail them never reach the ring buffer.
//!
//! Grammar (Go precedence): `||` < `&&` < comparisons < `+ -` < `* / %` <
//! unary `! -` < postfix `.field`, `[index]`; primaries are literals (ints,
//! floats, "strings", true, false, nil), names, `len(x)` and `( … )`.

use std::fmt;

use probe_common::{Filter, FILTER_OPS};

use crate::{
    capture::{word, ParamPlan},
    dwarf::{DebugInfo, Kind, TypeId},
    value::Value,
};

/// A parse or type error, with its 1-based column in the expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CondError {
    pub col: usize,
    pub msg: String,
}

impl fmt::Display for CondError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "column {}: {}", self.col, self.msg)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Int(i128),
    Float(f64),
    Str(String),
    Ident(String),
    Op(&'static str),
}

fn lex(src: &str) -> Result<Vec<(Tok, usize)>, CondError> {
    let b: Vec<char> = src.chars().collect();
    let mut i = 0;
    let mut out = vec![];
    const OPS: [&str; 20] = [
        "&&", "||", "==", "!=", "<=", ">=", "<", ">", "!", "+", "-", "*", "/", "%", "(", ")", "[",
        "]", ".", ",",
    ];
    while i < b.len() {
        let c = b[i];
        let col = i + 1;
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_digit() {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == '.' || b[i] == '_') {
                i += 1;
            }
            let t: String = b[start..i].iter().filter(|c| **c != '_').collect();
            let tok = if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
                i128::from_str_radix(h, 16).map(Tok::Int).ok()
            } else if t.contains(['.', 'e', 'E']) {
                t.parse().map(Tok::Float).ok()
            } else {
                t.parse().map(Tok::Int).ok()
            };
            out.push((
                tok.ok_or(CondError {
                    col,
                    msg: format!("bad number {t:?}"),
                })?,
                col,
            ));
        } else if c == '"' {
            i += 1;
            let mut s = String::new();
            loop {
                match b.get(i) {
                    None => {
                        return Err(CondError {
                            col,
                            msg: "unterminated string".into(),
                        })
                    }
                    Some('"') => break,
                    Some('\\') => {
                        i += 1;
                        s.push(match b.get(i) {
                            Some('n') => '\n',
                            Some('t') => '\t',
                            Some(c) => *c,
                            None => {
                                return Err(CondError {
                                    col,
                                    msg: "unterminated string".into(),
                                })
                            }
                        });
                    }
                    Some(c) => s.push(*c),
                }
                i += 1;
            }
            i += 1;
            out.push((Tok::Str(s), col));
        } else if c.is_alphabetic() || c == '_' || c == '~' {
            let start = i;
            while i < b.len() && (b[i].is_alphanumeric() || b[i] == '_' || b[i] == '~') {
                i += 1;
            }
            out.push((Tok::Ident(b[start..i].iter().collect()), col));
        } else {
            let rest: String = b[i..b.len().min(i + 2)].iter().collect();
            match OPS.iter().find(|op| rest.starts_with(**op)) {
                Some(op) => {
                    out.push((Tok::Op(op), col));
                    i += op.len();
                }
                None => {
                    return Err(CondError {
                        col,
                        msg: format!("unexpected {c:?}"),
                    })
                }
            }
        }
    }
    Ok(out)
}

/// A parsed expression node with its column.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    pub col: usize,
    pub kind: ExprKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ExprKind {
    Int(i128),
    Float(f64),
    Str(String),
    Bool(bool),
    Nil,
    Var(String),
    Field(Box<Expr>, String),
    Index(Box<Expr>, Box<Expr>),
    Len(Box<Expr>),
    Unary(&'static str, Box<Expr>),
    Binary(&'static str, Box<Expr>, Box<Expr>),
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    i: usize,
    end: usize,
}

/// Parses an expression.
pub fn parse(src: &str) -> Result<Expr, CondError> {
    let toks = lex(src)?;
    let mut p = Parser {
        toks,
        i: 0,
        end: src.chars().count() + 1,
    };
    let e = p.binary(0)?;
    if let Some((t, col)) = p.toks.get(p.i) {
        return Err(CondError {
            col: *col,
            msg: format!("unexpected {}", show(t)),
        });
    }
    Ok(e)
}

fn show(t: &Tok) -> String {
    match t {
        Tok::Int(i) => i.to_string(),
        Tok::Float(f) => f.to_string(),
        Tok::Str(s) => format!("{s:?}"),
        Tok::Ident(s) => s.clone(),
        Tok::Op(o) => format!("'{o}'"),
    }
}

const LEVELS: [&[&str]; 5] = [
    &["||"],
    &["&&"],
    &["==", "!=", "<", "<=", ">", ">="],
    &["+", "-"],
    &["*", "/", "%"],
];

impl Parser {
    fn peek_op(&self) -> Option<&'static str> {
        match self.toks.get(self.i) {
            Some((Tok::Op(o), _)) => Some(o),
            _ => None,
        }
    }

    fn col(&self) -> usize {
        self.toks.get(self.i).map(|t| t.1).unwrap_or(self.end)
    }

    fn expect(&mut self, op: &str) -> Result<(), CondError> {
        if self.peek_op() == Some(op) {
            self.i += 1;
            Ok(())
        } else {
            Err(CondError {
                col: self.col(),
                msg: format!("expected '{op}'"),
            })
        }
    }

    fn binary(&mut self, level: usize) -> Result<Expr, CondError> {
        if level == LEVELS.len() {
            return self.unary();
        }
        let mut left = self.binary(level + 1)?;
        while let Some(op) = self.peek_op().filter(|o| LEVELS[level].contains(o)) {
            let col = self.col();
            self.i += 1;
            let right = self.binary(level + 1)?;
            left = Expr {
                col,
                kind: ExprKind::Binary(op, Box::new(left), Box::new(right)),
            };
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, CondError> {
        if let Some(op @ ("!" | "-")) = self.peek_op() {
            let col = self.col();
            self.i += 1;
            let e = self.unary()?;
            return Ok(Expr {
                col,
                kind: ExprKind::Unary(op, Box::new(e)),
            });
        }
        self.postfix()
    }

    fn postfix(&mut self) -> Result<Expr, CondError> {
        let mut e = self.primary()?;
        loop {
            match self.peek_op() {
                Some(".") => {
                    let col = self.col();
                    self.i += 1;
                    match self.toks.get(self.i) {
                        Some((Tok::Ident(name), _)) => {
                            let name = name.clone();
                            self.i += 1;
                            e = Expr {
                                col,
                                kind: ExprKind::Field(Box::new(e), name),
                            };
                        }
                        _ => {
                            return Err(CondError {
                                col: self.col(),
                                msg: "expected a field name after '.'".into(),
                            })
                        }
                    }
                }
                Some("[") => {
                    let col = self.col();
                    self.i += 1;
                    let idx = self.binary(0)?;
                    self.expect("]")?;
                    e = Expr {
                        col,
                        kind: ExprKind::Index(Box::new(e), Box::new(idx)),
                    };
                }
                _ => return Ok(e),
            }
        }
    }

    fn primary(&mut self) -> Result<Expr, CondError> {
        let col = self.col();
        let Some((tok, _)) = self.toks.get(self.i).cloned() else {
            return Err(CondError {
                col,
                msg: "expected an expression".into(),
            });
        };
        self.i += 1;
        let kind = match tok {
            Tok::Int(i) => ExprKind::Int(i),
            Tok::Float(f) => ExprKind::Float(f),
            Tok::Str(s) => ExprKind::Str(s),
            Tok::Ident(id) => match id.as_str() {
                "true" => ExprKind::Bool(true),
                "false" => ExprKind::Bool(false),
                "nil" => ExprKind::Nil,
                "len" if self.peek_op() == Some("(") => {
                    self.i += 1;
                    let e = self.binary(0)?;
                    self.expect(")")?;
                    ExprKind::Len(Box::new(e))
                }
                _ => ExprKind::Var(id),
            },
            Tok::Op("(") => {
                let e = self.binary(0)?;
                self.expect(")")?;
                return Ok(e);
            }
            Tok::Op(o) => {
                return Err(CondError {
                    col,
                    msg: format!("unexpected '{o}'"),
                })
            }
        };
        Ok(Expr { col, kind })
    }
}

/// The static type of a sub-expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    Int,
    Float,
    Str,
    Bool,
    Nil,
    /// A Go value of a DWARF type that is not a basic one.
    Go(TypeId),
}

/// A checked condition, ready to evaluate and to push down.
#[derive(Debug, Clone)]
pub struct Condition {
    pub src: String,
    pub expr: Expr,
}

impl Condition {
    /// Parses and type-checks `src` against the variables of a probe.
    pub fn new(src: &str, d: &DebugInfo, vars: &[ParamPlan]) -> Result<Self, CondError> {
        let expr = parse(src)?;
        let t = check(&expr, d, vars)?;
        if t != Ty::Bool {
            return Err(CondError {
                col: 1,
                msg: "the condition must be a bool expression".into(),
            });
        }
        Ok(Self {
            src: src.to_owned(),
            expr,
        })
    }

    /// Evaluates on decoded variables: `Ok(bool)`, or `Err(why)` when a value
    /// it needs was not captured.
    pub fn eval(&self, vars: &[(String, Value)]) -> Result<bool, String> {
        match eval(&self.expr, vars)? {
            V::Bool(b) => Ok(b),
            _ => Err("not a bool".into()),
        }
    }

    /// The first part of the condition that looks into the contents of a
    /// string (a comparison with a string, an index into a string or a
    /// map), as source text; `None` when it only needs lengths and
    /// non-string values. A daemon policy that withholds strings refuses
    /// such conditions: the kernel would compare the bytes, and the result
    /// would tell them.
    pub fn reads_strings(&self, d: &DebugInfo, vars: &[ParamPlan]) -> Option<String> {
        fn walk(e: &Expr, d: &DebugInfo, vars: &[ParamPlan]) -> Option<String> {
            let ty = |x: &Expr| check(x, d, vars).ok();
            match &e.kind {
                ExprKind::Binary(op, l, r) => {
                    if !matches!(*op, "&&" | "||")
                        && (ty(l) == Some(Ty::Str) || ty(r) == Some(Ty::Str))
                    {
                        return Some(render(e));
                    }
                    walk(l, d, vars).or_else(|| walk(r, d, vars))
                }
                ExprKind::Index(x, i) => {
                    let into_text = match ty(x) {
                        Some(Ty::Str) => true,
                        Some(Ty::Go(t)) => matches!(d.underlying(t).kind, Kind::Map { .. }),
                        _ => false,
                    };
                    if into_text {
                        return Some(render(e));
                    }
                    walk(x, d, vars).or_else(|| walk(i, d, vars))
                }
                ExprKind::Unary(_, x) | ExprKind::Field(x, _) => walk(x, d, vars),
                // len() needs only the length word, which is shown anyway.
                ExprKind::Len(_) => None,
                _ => None,
            }
        }
        walk(&self.expr, d, vars)
    }

    /// The top-level `&&` terms the kernel can check, as filters, and the
    /// source text of those it cannot (evaluated in userspace — the whole
    /// condition is always evaluated there too).
    pub fn pushdown(
        &self,
        d: &DebugInfo,
        vars: &[ParamPlan],
    ) -> (Vec<(Filter, String)>, Vec<String>) {
        let mut terms = vec![];
        conjuncts(&self.expr, &mut terms);
        let mut filters = vec![];
        let mut rest = vec![];
        for t in terms {
            match filter_for(t, d, vars) {
                Some(f) if filters.len() < FILTER_OPS => filters.push((f, render(t))),
                _ => rest.push(render(t)),
            }
        }
        (filters, rest)
    }
}

fn conjuncts<'a>(e: &'a Expr, out: &mut Vec<&'a Expr>) {
    match &e.kind {
        ExprKind::Binary("&&", l, r) => {
            conjuncts(l, out);
            conjuncts(r, out);
        }
        _ => out.push(e),
    }
}

/// Source-like text of an expression (for `--dry-run`).
pub fn render(e: &Expr) -> String {
    match &e.kind {
        ExprKind::Int(i) => i.to_string(),
        ExprKind::Float(f) => f.to_string(),
        ExprKind::Str(s) => format!("{s:?}"),
        ExprKind::Bool(b) => b.to_string(),
        ExprKind::Nil => "nil".into(),
        ExprKind::Var(v) => v.clone(),
        ExprKind::Field(x, f) => format!("{}.{f}", render(x)),
        ExprKind::Index(x, i) => format!("{}[{}]", render(x), render(i)),
        ExprKind::Len(x) => format!("len({})", render(x)),
        ExprKind::Unary(op, x) => format!("{op}{}", render(x)),
        ExprKind::Binary(op, l, r) => format!("({} {op} {})", render(l), render(r)),
    }
}

fn basic(d: &DebugInfo, ty: TypeId) -> Ty {
    match d.underlying(ty).kind {
        Kind::Int | Kind::Uint => Ty::Int,
        Kind::Float => Ty::Float,
        Kind::String => Ty::Str,
        Kind::Bool => Ty::Bool,
        _ => Ty::Go(ty),
    }
}

fn check(e: &Expr, d: &DebugInfo, vars: &[ParamPlan]) -> Result<Ty, CondError> {
    let err = |msg: String| CondError { col: e.col, msg };
    Ok(match &e.kind {
        ExprKind::Int(_) => Ty::Int,
        ExprKind::Float(_) => Ty::Float,
        ExprKind::Str(_) => Ty::Str,
        ExprKind::Bool(_) => Ty::Bool,
        ExprKind::Nil => Ty::Nil,
        ExprKind::Var(name) => match vars.iter().find(|v| &v.name == name) {
            Some(v) => basic(d, v.ty),
            None => {
                let names: Vec<&str> = vars.iter().map(|v| v.name.as_str()).collect();
                return Err(err(format!(
                    "no argument or local named {name:?} here (have: {})",
                    names.join(", ")
                )));
            }
        },
        ExprKind::Field(x, f) => {
            let Ty::Go(mut t) = check(x, d, vars)? else {
                return Err(err(format!("cannot take field .{f} of a basic value")));
            };
            // Field access goes through pointers, as in Go.
            if let Kind::Pointer { pointee: Some(p) } = d.underlying(t).kind {
                t = p;
            }
            match &d.underlying(t).kind {
                Kind::Struct { fields } => match fields.iter().find(|x| {
                    &x.name == f || (x.embedded && d.ty(x.ty).name.ends_with(&format!(".{f}")))
                }) {
                    Some(fl) => basic(d, fl.ty),
                    None => {
                        let names: Vec<&str> = fields.iter().map(|x| x.name.as_str()).collect();
                        return Err(err(format!(
                            "{} has no field {f} (fields: {})",
                            d.ty(t).name,
                            names.join(", ")
                        )));
                    }
                },
                _ => return Err(err(format!("{} is not a struct", d.ty(t).name))),
            }
        }
        ExprKind::Index(x, i) => {
            let xt = check(x, d, vars)?;
            let it = check(i, d, vars)?;
            match xt {
                Ty::Str => {
                    if it != Ty::Int {
                        return Err(err("string index must be an integer".into()));
                    }
                    Ty::Int
                }
                Ty::Go(t) => match &d.underlying(t).kind {
                    Kind::Slice { elem } | Kind::Array { elem, .. } => {
                        if it != Ty::Int {
                            return Err(err("index must be an integer".into()));
                        }
                        basic(d, *elem)
                    }
                    Kind::Map { .. } => Ty::Go(t), // checked loosely: the value's type comes from the data
                    _ => return Err(err(format!("cannot index {}", d.ty(t).name))),
                },
                _ => return Err(err("cannot index this value".into())),
            }
        }
        ExprKind::Len(x) => match check(x, d, vars)? {
            Ty::Str => Ty::Int,
            Ty::Go(t)
                if matches!(
                    d.underlying(t).kind,
                    Kind::Slice { .. } | Kind::Array { .. } | Kind::Map { .. } | Kind::Chan { .. }
                ) =>
            {
                Ty::Int
            }
            _ => {
                return Err(err(
                    "len() takes a string, slice, array, map or channel".into()
                ))
            }
        },
        ExprKind::Unary(op, x) => {
            let t = check(x, d, vars)?;
            match (*op, t) {
                ("!", Ty::Bool) => Ty::Bool,
                ("-", Ty::Int | Ty::Float) => t,
                _ => return Err(err(format!("operator {op} does not apply here"))),
            }
        }
        ExprKind::Binary(op, l, r) => {
            let (lt, rt) = (check(l, d, vars)?, check(r, d, vars)?);
            let num = |t: Ty| matches!(t, Ty::Int | Ty::Float);
            match *op {
                "&&" | "||" => {
                    if lt != Ty::Bool || rt != Ty::Bool {
                        return Err(err(format!("{op} needs bool operands")));
                    }
                    Ty::Bool
                }
                "==" | "!=" => {
                    let ok = (num(lt) && num(rt))
                        || lt == rt
                        || matches!((lt, rt), (Ty::Nil, Ty::Go(_)) | (Ty::Go(_), Ty::Nil))
                        || matches!((lt, rt), (Ty::Go(_), _) | (_, Ty::Go(_)));
                    if !ok {
                        return Err(err(format!("mismatched types in {op}: {lt:?} and {rt:?}")));
                    }
                    Ty::Bool
                }
                "<" | "<=" | ">" | ">=" => {
                    if !((num(lt) && num(rt))
                        || (lt == Ty::Str && rt == Ty::Str)
                        || matches!((lt, rt), (Ty::Go(_), _) | (_, Ty::Go(_))))
                    {
                        return Err(err(format!("cannot compare {lt:?} and {rt:?} with {op}")));
                    }
                    Ty::Bool
                }
                "+" if lt == Ty::Str && rt == Ty::Str => Ty::Str,
                _ => {
                    if !(num(lt) && num(rt)) {
                        return Err(err(format!(
                            "operator {op} needs numbers, got {lt:?} and {rt:?}"
                        )));
                    }
                    if lt == Ty::Float || rt == Ty::Float {
                        Ty::Float
                    } else {
                        Ty::Int
                    }
                }
            }
        }
    })
}

/// Runtime values of the evaluator.
#[derive(Debug, Clone, PartialEq)]
enum V {
    Int(i128),
    Float(f64),
    Str(String),
    Bool(bool),
    Nil,
    Go(Value),
}

fn lift(v: &Value) -> Result<V, String> {
    Ok(match v {
        Value::Int(i) => V::Int(*i as i128),
        Value::Duration(i) => V::Int(*i as i128),
        Value::Uint(u) => V::Int(*u as i128),
        Value::Float(f) => V::Float(*f),
        Value::Bool(b) => V::Bool(*b),
        Value::Str {
            truncated: true, ..
        } => return Err("a string the condition reads was cut by --max-string".into()),
        Value::Str { text, .. } => V::Str(text.clone()),
        Value::Nil => V::Nil,
        Value::Unavailable(why) => return Err(why.clone()),
        other => V::Go(other.clone()),
    })
}

fn deref(v: &Value) -> &Value {
    match v {
        Value::Pointer(p) => deref(p),
        Value::Iface { value, .. } => deref(value),
        other => other,
    }
}

fn eval(e: &Expr, vars: &[(String, Value)]) -> Result<V, String> {
    Ok(match &e.kind {
        ExprKind::Int(i) => V::Int(*i),
        ExprKind::Float(f) => V::Float(*f),
        ExprKind::Str(s) => V::Str(s.clone()),
        ExprKind::Bool(b) => V::Bool(*b),
        ExprKind::Nil => V::Nil,
        ExprKind::Var(n) => lift(
            &vars
                .iter()
                .find(|(k, _)| k == n)
                .ok_or_else(|| format!("{n} missing"))?
                .1,
        )?,
        ExprKind::Field(x, f) => match eval(x, vars)? {
            V::Go(v) => match deref(&v) {
                Value::Struct(fields) => lift(
                    &fields
                        .iter()
                        .find(|(k, _)| k == f)
                        .ok_or_else(|| format!("no field {f}"))?
                        .1,
                )?,
                Value::Nil => return Err(format!("nil pointer dereference reading .{f}")),
                other => return Err(format!("cannot read .{f} of {}", other.pretty())),
            },
            V::Nil => return Err(format!("nil pointer dereference reading .{f}")),
            _ => return Err(format!("cannot read .{f}")),
        },
        ExprKind::Index(x, i) => {
            let (xv, iv) = (eval(x, vars)?, eval(i, vars)?);
            match (xv, iv) {
                (V::Str(s), V::Int(i)) => V::Int(
                    *s.as_bytes()
                        .get(usize::try_from(i).map_err(|_| "negative index")?)
                        .ok_or("index out of range")? as i128,
                ),
                (V::Go(v), key) => match deref(&v) {
                    Value::List { items, len } => {
                        let V::Int(i) = key else {
                            return Err("index must be an integer".into());
                        };
                        let i = usize::try_from(i).map_err(|_| "negative index")?;
                        if i as u64 >= *len {
                            return Err("index out of range".into());
                        }
                        lift(items.get(i).ok_or("element not captured (--max-elems)")?)?
                    }
                    Value::Map { entries, len } => {
                        for (k, val) in entries {
                            if lift(k).ok().as_ref() == Some(&key)
                                || matches!((lift(k), &key), (Ok(V::Int(a)), V::Int(b)) if a == *b)
                            {
                                return lift(val);
                            }
                        }
                        if (entries.len() as u64) < *len {
                            return Err("map entry not captured (--max-elems)".into());
                        }
                        return Err("no such key".into());
                    }
                    _ => return Err("cannot index this value".into()),
                },
                (V::Nil, _) => return Err("index of a nil value".into()),
                _ => return Err("cannot index this value".into()),
            }
        }
        ExprKind::Len(x) => match eval(x, vars)? {
            V::Str(s) => V::Int(s.len() as i128),
            V::Nil => V::Int(0),
            V::Go(v) => match deref(&v) {
                Value::List { len, .. } | Value::Map { len, .. } | Value::Chan { len, .. } => {
                    V::Int(*len as i128)
                }
                Value::Str { len, .. } | Value::Withheld { len } => V::Int(*len as i128),
                _ => return Err("len of this value".into()),
            },
            _ => return Err("len of this value".into()),
        },
        ExprKind::Unary("!", x) => match eval(x, vars)? {
            V::Bool(b) => V::Bool(!b),
            _ => return Err("! needs a bool".into()),
        },
        ExprKind::Unary(_, x) => match eval(x, vars)? {
            V::Int(i) => V::Int(-i),
            V::Float(f) => V::Float(-f),
            _ => return Err("- needs a number".into()),
        },
        ExprKind::Binary("&&", l, r) => match eval(l, vars)? {
            V::Bool(false) => V::Bool(false),
            V::Bool(true) => eval(r, vars)?,
            _ => return Err("&& needs bools".into()),
        },
        ExprKind::Binary("||", l, r) => match eval(l, vars)? {
            V::Bool(true) => V::Bool(true),
            V::Bool(false) => eval(r, vars)?,
            _ => return Err("|| needs bools".into()),
        },
        ExprKind::Binary(op, l, r) => binop(op, eval(l, vars)?, eval(r, vars)?)?,
    })
}

fn binop(op: &str, l: V, r: V) -> Result<V, String> {
    use std::cmp::Ordering;
    let ord = match (&l, &r) {
        (V::Int(a), V::Int(b)) => Some(a.cmp(b)),
        (V::Int(a), V::Float(b)) => (*a as f64).partial_cmp(b),
        (V::Float(a), V::Int(b)) => a.partial_cmp(&(*b as f64)),
        (V::Float(a), V::Float(b)) => a.partial_cmp(b),
        (V::Str(a), V::Str(b)) => Some(a.cmp(b)),
        _ => None,
    };
    let eq = match (&l, &r) {
        (V::Nil, V::Go(v)) | (V::Go(v), V::Nil) => Some(matches!(deref(v), Value::Nil)),
        (V::Go(a), V::Go(b)) => Some(a == b),
        (V::Bool(a), V::Bool(b)) => Some(a == b),
        (V::Nil, V::Nil) => Some(true),
        _ => ord.map(|o| o == Ordering::Equal),
    };
    Ok(match op {
        "==" => V::Bool(eq.ok_or("cannot compare")?),
        "!=" => V::Bool(!eq.ok_or("cannot compare")?),
        "<" => V::Bool(ord.ok_or("cannot compare")? == Ordering::Less),
        "<=" => V::Bool(ord.ok_or("cannot compare")? != Ordering::Greater),
        ">" => V::Bool(ord.ok_or("cannot compare")? == Ordering::Greater),
        ">=" => V::Bool(ord.ok_or("cannot compare")? != Ordering::Less),
        _ => match (l, r) {
            (V::Str(a), V::Str(b)) if op == "+" => V::Str(a + &b),
            (V::Int(a), V::Int(b)) => V::Int(match op {
                "+" => a + b,
                "-" => a - b,
                "*" => a * b,
                "/" => a.checked_div(b).ok_or("division by zero")?,
                _ => a.checked_rem(b).ok_or("division by zero")?,
            }),
            (a, b) => {
                let f = |v: V| match v {
                    V::Int(i) => Ok(i as f64),
                    V::Float(f) => Ok(f),
                    _ => Err("arithmetic needs numbers".to_owned()),
                };
                let (a, b) = (f(a)?, f(b)?);
                V::Float(match op {
                    "+" => a + b,
                    "-" => a - b,
                    "*" => a * b,
                    "/" => a / b,
                    _ => a % b,
                })
            }
        },
    })
}

/// A kernel filter for `name OP literal` on an integer/bool argument held
/// whole in a register or stack slot, or `name == "lit"` on a string whose
/// literal fits the filter (≤ 16 bytes).
fn filter_for(t: &Expr, d: &DebugInfo, vars: &[ParamPlan]) -> Option<Filter> {
    let ExprKind::Binary(op, l, r) = &t.kind else {
        return None;
    };
    let (name, lit, op) = match (&l.kind, &r.kind) {
        (ExprKind::Var(n), _) => (n, r, *op),
        (_, ExprKind::Var(n)) => (n, l, flip(op)?),
        _ => return None,
    };
    let opcode = match op {
        "==" => probe_common::filter::EQ,
        "!=" => probe_common::filter::NE,
        "<" => probe_common::filter::LT,
        "<=" => probe_common::filter::LE,
        ">" => probe_common::filter::GT,
        ">=" => probe_common::filter::GE,
        _ => return None,
    };
    let v = vars.iter().find(|v| &v.name == name)?;
    let ty = d.underlying(v.ty);
    let mut f = Filter {
        op: opcode,
        size: ty.size as u8,
        ..Default::default()
    };
    match (&ty.kind, &lit.kind) {
        (Kind::Int, ExprKind::Int(_)) | (Kind::Int, ExprKind::Unary("-", _)) => {
            let i = match &lit.kind {
                ExprKind::Int(i) => *i,
                ExprKind::Unary(_, x) => match x.kind {
                    ExprKind::Int(i) => -i,
                    _ => return None,
                },
                _ => return None,
            };
            f.kind = probe_common::filter::INT;
            f.value = i64::try_from(i).ok()? as u64;
        }
        (Kind::Uint, ExprKind::Int(i)) => {
            f.kind = probe_common::filter::UINT;
            f.value = u64::try_from(*i).ok()?;
        }
        (Kind::Bool, ExprKind::Bool(b)) if matches!(op, "==" | "!=") => {
            f.kind = probe_common::filter::UINT;
            f.value = *b as u64;
        }
        (Kind::String, ExprKind::Str(s)) if matches!(op, "==" | "!=") && s.len() <= 16 => {
            f.kind = probe_common::filter::STR;
            f.len_src = word(&v.pieces, 8)?;
            f.value = s.len() as u64;
            f.bytes[..s.len()].copy_from_slice(s.as_bytes());
        }
        _ => return None,
    }
    if ty.size > 8 && f.kind != probe_common::filter::STR {
        return None;
    }
    f.src = word(&v.pieces, 0)?;
    Some(f)
}

fn flip(op: &str) -> Option<&'static str> {
    Some(match op {
        "==" => "==",
        "!=" => "!=",
        "<" => ">",
        "<=" => ">=",
        ">" => "<",
        ">=" => "<=",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, Value)]) -> Vec<(String, Value)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    fn ev(src: &str, v: &[(String, Value)]) -> Result<bool, String> {
        match eval(&parse(src).unwrap(), v)? {
            V::Bool(b) => Ok(b),
            other => Err(format!("{other:?}")),
        }
    }

    #[test]
    fn precedence_and_columns() {
        let e = parse("a + 2 * 3 == 7 && !b").unwrap();
        assert_eq!(render(&e), "(((a + (2 * 3)) == 7) && !b)");
        assert_eq!(
            parse("a == ").unwrap_err(),
            CondError {
                col: 6,
                msg: "expected an expression".into()
            }
        );
        assert_eq!(parse("a = 1").unwrap_err().col, 3);
        assert_eq!(parse("(a == 1").unwrap_err().msg, "expected ')'");
        assert_eq!(parse("\"abc").unwrap_err().msg, "unterminated string");
    }

    #[test]
    fn evaluates_go_like() {
        let o = Value::Pointer(Box::new(Value::Struct(vec![
            (
                "Name".into(),
                Value::Str {
                    text: "bob".into(),
                    len: 3,
                    truncated: false,
                },
            ),
            (
                "Items".into(),
                Value::List {
                    items: vec![Value::Int(5), Value::Int(7)],
                    len: 2,
                },
            ),
            (
                "M".into(),
                Value::Map {
                    entries: vec![(
                        Value::Str {
                            text: "k".into(),
                            len: 1,
                            truncated: false,
                        },
                        Value::Int(9),
                    )],
                    len: 1,
                },
            ),
        ])));
        let v = vars(&[
            ("n", Value::Int(14)),
            ("o", o),
            ("p", Value::Nil),
            ("f", Value::Float(1.5)),
        ]);
        assert_eq!(ev("n % 7 == 0 && n > 10", &v), Ok(true));
        assert_eq!(
            ev(
                "o.Name == \"bob\" && len(o.Items) == 2 && o.Items[1] == 7",
                &v
            ),
            Ok(true)
        );
        assert_eq!(ev("o.M[\"k\"] == 9", &v), Ok(true));
        assert_eq!(ev("p == nil && o != nil", &v), Ok(true));
        assert_eq!(ev("f * 2 == 3 || n / 0 == 1", &v), Ok(true));
        assert!(ev("p.X == 1", &v).unwrap_err().contains("nil pointer"));
        assert!(ev("o.Items[5] == 1", &v)
            .unwrap_err()
            .contains("out of range"));
        assert_eq!(ev("-n < 0 && !(n != 14)", &v), Ok(true));
    }
}
