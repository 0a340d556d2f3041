//! Typed inputs of the macros: the derived struct with its classified fields, and `trace!`'s
//! arguments. Parsing validates as it goes and collects every error it finds.

use syn::parse::{Parse, ParseStream};

use crate::errors::Errors;
use syn::spanned::Spanned;
use syn::{
    Block, Data, DeriveInput, Expr, ExprClosure, Fields, GenericArgument, Ident, Pat, PathArguments, Token,
    Type, Visibility,
};

/// A struct that derives `Inspectable`.
pub(crate) struct Struct<'a> {
    pub(crate) modules: Vec<ModuleField<'a>>,
}

/// A field that is (or holds) a module.
pub(crate) struct ModuleField<'a> {
    pub(crate) vis: &'a Visibility,
    pub(crate) name: &'a Ident,
    /// The path component: the field's name, or what `#[inspect(rename = "..")]` says (a name
    /// Rust cannot spell, such as BERT's `self`).
    pub(crate) path: String,
    pub(crate) kind: FieldKind<'a>,
    /// `#[inspect(part = N)]`: the part of a several-part input the submodule's values belong to.
    pub(crate) part: Option<usize>,
}

/// How a module field holds its module(s).
pub(crate) enum FieldKind<'a> {
    /// `M`
    Single(&'a Type),
    /// `Vec<M>`
    List(&'a Type),
    /// `Option<M>`
    Optional(&'a Type),
}

/// Last path segments of field types that are never modules.
const PLAIN: &[&str] = &[
    "Param",
    "Tensor",
    "Ignored",
    "RunningState",
    "PhantomData",
    "bool",
    "char",
    "u8",
    "u16",
    "u32",
    "u64",
    "u128",
    "usize",
    "i8",
    "i16",
    "i32",
    "i64",
    "i128",
    "isize",
    "f32",
    "f64",
    "String",
    "bf16",
    "f16",
];

impl<'a> Struct<'a> {
    pub(crate) fn from_syn(input: &'a DeriveInput) -> syn::Result<Self> {
        let fields = match &input.data {
            Data::Struct(data) => match &data.fields {
                Fields::Named(fields) => fields,
                Fields::Unnamed(_) | Fields::Unit => {
                    return Err(syn::Error::new_spanned(
                        &input.ident,
                        "`Inspectable` needs a struct with named fields: the field names are the module paths",
                    ));
                }
            },
            Data::Enum(data) => {
                return Err(syn::Error::new(
                    data.enum_token.span,
                    "`Inspectable` can only be derived for structs; an enum has no fixed module tree",
                ));
            }
            Data::Union(data) => {
                return Err(syn::Error::new(
                    data.union_token.span,
                    "`Inspectable` can only be derived for structs",
                ));
            }
        };
        let mut errors = Errors::default();
        let mut modules = Vec::new();
        for field in &fields.named {
            let name = field.ident.as_ref().expect("named fields have names");
            let (rename, part) = match errors.check(field_options(field)) {
                Some(FieldOptions { skip: false, rename, part }) => (rename, part),
                Some(FieldOptions { skip: true, .. }) | None => continue,
            };
            if let Some(kind) = classify(&field.ty) {
                let path = rename.unwrap_or_else(|| name.to_string());
                modules.push(ModuleField { vis: &field.vis, name, path, kind, part });
            }
        }
        errors.finish(Struct { modules })
    }
}

/// What a field's attributes ask for.
struct FieldOptions {
    /// `#[inspect(skip)]` or burn's `#[module(skip)]`: not a module.
    skip: bool,
    /// `#[inspect(rename = "self")]`: the module's path component, when not the field's name.
    rename: Option<String>,
    /// `#[inspect(part = 1)]`: the part of a several-part input the submodule belongs to.
    part: Option<usize>,
}

/// The field's options: `#[inspect(skip)]`, burn's `#[module(skip)]`, `#[inspect(rename = "..")]`,
/// `#[inspect(part = N)]`.
fn field_options(field: &syn::Field) -> syn::Result<FieldOptions> {
    let mut options = FieldOptions { skip: false, rename: None, part: None };
    // burn's own `#[module(skip)]` marks a field that is not a module.
    for attr in field.attrs.iter().filter(|a| a.path().is_ident("module")) {
        let _ = attr.parse_nested_meta(|meta| {
            options.skip |= meta.path.is_ident("skip");
            Ok(())
        });
    }
    for attr in field.attrs.iter().filter(|a| a.path().is_ident("inspect")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("skip") {
                options.skip = true;
                Ok(())
            } else if meta.path.is_ident("rename") {
                let name: syn::LitStr = meta.value()?.parse()?;
                let text = name.value();
                if text.is_empty() || text.contains('.') {
                    return Err(syn::Error::new(
                        name.span(),
                        "a renamed path component is one non-empty name, without `.`",
                    ));
                }
                options.rename = Some(text);
                Ok(())
            } else if meta.path.is_ident("part") {
                let part: syn::LitInt = meta.value()?.parse()?;
                options.part = Some(part.base10_parse()?);
                Ok(())
            } else {
                Err(meta.error(
                    "unknown `inspect` option; the field options are `skip`, `rename = \"..\"` and `part = N`",
                ))
            }
        })?;
    }
    Ok(options)
}

/// Classifies a field type; `None` for types that are not modules.
fn classify(ty: &Type) -> Option<FieldKind<'_>> {
    let (name, inner) = last_segment(ty)?;
    if PLAIN.contains(&name.to_string().as_str()) {
        return None;
    }
    match (name.to_string().as_str(), inner) {
        ("Vec", Some(inner)) => plain_or(inner, FieldKind::List(inner)),
        ("Option", Some(inner)) => plain_or(inner, FieldKind::Optional(inner)),
        _ => Some(FieldKind::Single(ty)),
    }
}

fn plain_or<'a>(inner: &'a Type, kind: FieldKind<'a>) -> Option<FieldKind<'a>> {
    let (name, _) = last_segment(inner)?;
    (!PLAIN.contains(&name.to_string().as_str())).then_some(kind)
}

/// The last path segment of a type, with its first type argument.
fn last_segment(ty: &Type) -> Option<(&Ident, Option<&Type>)> {
    let Type::Path(path) = ty else { return None };
    let segment = path.path.segments.last()?;
    let inner = match &segment.arguments {
        PathArguments::AngleBracketed(args) => args.args.iter().find_map(|a| match a {
            GenericArgument::Type(t) => Some(t),
            _ => None,
        }),
        _ => None,
    };
    Some((&segment.ident, inner))
}

/// The arguments of `trace!`: `(model, input, |m| body)`, or `(model, |m| { invoke .. { .. } .. })`.
pub(crate) enum TraceInput {
    /// One input, one body.
    Single { model: Expr, input: Expr, body: ExprClosure },
    /// Several invokes, each with its input (none for an invoke over the whole batch) and body.
    Invokes { model: Expr, envoy: Pat, invokes: Vec<InvokeBlock> },
}

/// `invoke INPUT { .. }` or `invoke { .. }` inside `trace!`.
pub(crate) struct InvokeBlock {
    pub(crate) input: Option<Expr>,
    pub(crate) body: Block,
}

impl Parse for TraceInput {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        const USAGE: &str =
            "expected `trace!(model, input, |m| { .. })` or `trace!(model, |m| { invoke input { .. } .. })`";
        let model: Expr = input.parse().map_err(|e| syn::Error::new(e.span(), USAGE))?;
        input.parse::<Token![,]>().map_err(|e| syn::Error::new(e.span(), USAGE))?;
        if input.peek(Token![|]) {
            return parse_invokes(model, input);
        }
        let input_expr: Expr = input.parse().map_err(|e| syn::Error::new(e.span(), USAGE))?;
        input.parse::<Token![,]>().map_err(|e| syn::Error::new(e.span(), USAGE))?;
        let body: Expr = input.parse()?;
        let Expr::Closure(body) = body else {
            return Err(syn::Error::new_spanned(
                body,
                "the last argument of `trace!` is the body: a closure over the envoy, `|m| { .. }`",
            ));
        };
        if body.inputs.len() != 1 {
            return Err(syn::Error::new(
                body.inputs.span(),
                "the body takes exactly one argument: the envoy, as in `|m| ..`",
            ));
        }
        if let Some(token) = body.asyncness {
            return Err(syn::Error::new(token.span, "`trace!` makes the body async itself; remove `async`"));
        }
        let _ = input.parse::<Token![,]>();
        if !input.is_empty() {
            return Err(input.error("unexpected tokens after the body of `trace!`"));
        }
        Ok(TraceInput::Single { model, input: input_expr, body })
    }
}

/// `|m| { invoke input { .. } invoke { .. } .. }`
fn parse_invokes(model: Expr, input: ParseStream<'_>) -> syn::Result<TraceInput> {
    input.parse::<Token![|]>()?;
    let envoy = Pat::parse_single(input)?;
    input.parse::<Token![|]>()?;
    let content;
    syn::braced!(content in input);
    let mut invokes = Vec::new();
    while !content.is_empty() {
        let keyword: Ident = content.parse()?;
        if keyword != "invoke" {
            return Err(syn::Error::new(
                keyword.span(),
                "a `trace!` body without an input argument is a list of `invoke input { .. }` blocks",
            ));
        }
        let prompt = if content.peek(syn::token::Brace) {
            None
        } else {
            Some(Expr::parse_without_eager_brace(&content)?)
        };
        let body: Block = content.parse()?;
        invokes.push(InvokeBlock { input: prompt, body });
    }
    if invokes.is_empty() {
        return Err(syn::Error::new(envoy.span(), "the body has no `invoke input { .. }` block"));
    }
    let _ = input.parse::<Token![,]>();
    if !input.is_empty() {
        return Err(input.error("unexpected tokens after the body of `trace!`"));
    }
    Ok(TraceInput::Invokes { model, envoy, invokes })
}
