"""Read infra/main.json as ARM would: its resources (nested templates too) and a small evaluator of
the template language, enough for what Event Grid delivers, the names, the roles and the alerts.

Nothing here reaches Azure. The evaluator knows only the functions the template's filter, naming,
role and alert expressions use; anything else (reference(), listKeys(), ...) raises, so a test can
never pass on an expression it did not really evaluate. Its guid() is a stand-in: deterministic in
its arguments as ARM's is, but not ARM's values.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_PATH = ROOT / "infra" / "main.json"


def load_template() -> dict[str, Any]:
    return json.loads(TEMPLATE_PATH.read_text())


def is_expression(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("[") and not value.startswith("[[")


# -- the expression language ------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple[Any, ...]


@dataclass(frozen=True)
class Literal:
    value: Any


@dataclass(frozen=True)
class Member:
    target: Any
    key: Any  # a str for .name, a node for [index]


_TOKEN = re.compile(
    r"\s*(?:(?P<string>'(?:[^']|'')*')|(?P<number>-?\d+)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?=\s*\()"
    r"|(?P<ident>[A-Za-z_][A-Za-z0-9_]*)|(?P<punct>[(),.\[\]]))"
)


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if not m:
            raise ValueError(f"cannot read ARM expression at {text[pos:]!r}")
        kind = m.lastgroup
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, text: str):
        self.tokens = _tokens(text)
        self.i = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, value: str | None = None) -> tuple[str, str]:
        token = self.peek()
        if token is None or (value is not None and token[1] != value):
            raise ValueError(f"expected {value!r}, found {token!r}")
        self.i += 1
        return token

    def expression(self) -> Any:
        kind, value = self.take()
        if kind == "string":
            node: Any = Literal(value[1:-1].replace("''", "'"))
        elif kind == "number":
            node = Literal(int(value))
        elif kind == "name":
            self.take("(")
            args = []
            while self.peek() and self.peek()[1] != ")":
                args.append(self.expression())
                if self.peek() and self.peek()[1] == ",":
                    self.take(",")
            self.take(")")
            node = Call(value, tuple(args))
        elif kind == "ident" and value in ("true", "false", "null"):
            node = Literal({"true": True, "false": False, "null": None}[value])
        else:
            raise ValueError(f"unexpected {value!r}")
        while self.peek() and self.peek()[1] in (".", "["):
            if self.take()[1] == ".":
                node = Member(node, self.take()[1])
            else:
                node = Member(node, self.expression())
                self.take("]")
        return node


def parse(expression: str) -> Any:
    """The syntax tree of a template expression string ("[...]")."""
    if not is_expression(expression) or not expression.endswith("]"):
        raise ValueError(f"not an ARM expression: {expression!r}")
    parser = _Parser(expression[1:-1])
    node = parser.expression()
    if parser.peek() is not None:
        raise ValueError(f"trailing text in {expression!r}")
    return node


def calls(node: Any) -> Iterator[Call]:
    """Every function call in a syntax tree, outermost first."""
    if isinstance(node, Call):
        yield node
        for arg in node.args:
            yield from calls(arg)
    elif isinstance(node, Member):
        yield from calls(node.target)
        if not isinstance(node.key, str):
            yield from calls(node.key)


def render(node: Any) -> str:
    """A canonical text of a syntax tree (to compare two expressions for the same thing)."""
    if isinstance(node, Literal):
        return repr(node.value)
    if isinstance(node, Call):
        return f"{node.name.lower()}({', '.join(render(a) for a in node.args)})"
    key = f".{node.key}" if isinstance(node.key, str) else f"[{render(node.key)}]"
    return render(node.target) + key


# -- evaluation -------------------------------------------------------------------------------


@dataclass
class Evaluator:
    """Evaluates expressions of one template scope, given parameter values (defaults fill in)."""

    template: dict[str, Any]
    parameters: dict[str, Any] = field(default_factory=dict)
    resource_group: str = "rg-retier"
    subscription_id: str = "00000000-0000-0000-0000-000000000000"
    _variables: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        unknown = set(self.parameters) - set(self.template.get("parameters", {}))
        if unknown:
            raise KeyError(f"no such template parameters: {sorted(unknown)}")

    # values
    def parameter(self, name: str) -> Any:
        if name in self.parameters:
            return self.parameters[name]
        spec = self.template["parameters"][name]
        if "defaultValue" not in spec:
            raise KeyError(f"parameter {name} has no value and no default")
        return self.value(spec["defaultValue"], {})

    def variable(self, name: str) -> Any:
        if name not in self._variables:
            self._variables[name] = self.value(self.template["variables"][name], {})
        return self._variables[name]

    def value(self, raw: Any, lambdas: dict[str, Any]) -> Any:
        if is_expression(raw):
            return self.evaluate(parse(raw), lambdas)
        if isinstance(raw, str) and raw.startswith("[["):
            return raw[1:]
        if isinstance(raw, dict):
            return {k: self.value(v, lambdas) for k, v in raw.items()}
        if isinstance(raw, list):
            return [self.value(v, lambdas) for v in raw]
        return raw

    def __call__(self, expression: str) -> Any:
        return self.value(expression, {})

    def expand(self, resource: dict[str, Any]) -> list[dict[str, Any]]:
        """A resource as ARM deploys it: [] when its condition is false, one evaluated copy per
        index of its copy loop, else itself evaluated. Properties that call functions the evaluator
        does not know (reference(), ...) raise: pass such values in as parameters instead."""
        if "condition" in resource and not self.value(resource["condition"], {}):
            return []
        body = {k: v for k, v in resource.items() if k not in ("condition", "copy")}
        if "copy" not in resource:
            return [self.value(body, {})]
        count = self.value(resource["copy"]["count"], {})
        return [self.value(body, {_COPY: i}) for i in range(count)]

    def evaluate(self, node: Any, lambdas: dict[str, Any]) -> Any:
        if isinstance(node, Literal):
            return node.value
        if isinstance(node, Member):
            target = self.evaluate(node.target, lambdas)
            key = node.key if isinstance(node.key, str) else self.evaluate(node.key, lambdas)
            return target[key]
        name = node.name.lower()
        if name == "lambda":
            raise ValueError("lambda() outside map() or filter()")
        if name in ("map", "filter"):
            items = self.evaluate(node.args[0], lambdas)
            fn = node.args[1]
            if not (isinstance(fn, Call) and fn.name.lower() == "lambda"):
                raise ValueError(f"{name}() needs a lambda")
            var, body = self.evaluate(fn.args[0], lambdas), fn.args[1]
            results = [self.evaluate(body, {**lambdas, var: item}) for item in items]
            if name == "map":
                return results
            return [item for item, keep in zip(items, results) if keep]
        if name == "lambdavariables":
            return lambdas[self.evaluate(node.args[0], lambdas)]
        if name == "copyindex":  # only inside a resource's copy loop (see expand())
            if _COPY not in lambdas:
                raise ValueError("copyIndex() outside a copy loop")
            offset = self.evaluate(node.args[0], lambdas) if node.args else 0
            return lambdas[_COPY] + offset
        if name == "if":  # lazy, as ARM evaluates only the branch taken
            condition = self.evaluate(node.args[0], lambdas)
            return self.evaluate(node.args[1 if condition else 2], lambdas)
        args = [self.evaluate(a, lambdas) for a in node.args]
        if name not in self.functions:
            raise NotImplementedError(f"the test evaluator does not know {node.name}()")
        return self.functions[name](self, *args)

    functions: dict[str, Callable[..., Any]] = field(
        default_factory=lambda: {
            "parameters": lambda self, n: self.parameter(n),
            "variables": lambda self, n: self.variable(n),
            "empty": lambda self, v: len(v) == 0,
            "not": lambda self, v: not v,
            "and": lambda self, *v: all(v),
            "greater": lambda self, a, b: a > b,
            "lessorequals": lambda self, a, b: a <= b,
            "add": lambda self, a, b: a + b,
            "length": lambda self, v: len(v),
            "createarray": lambda self, *v: list(v),
            "createobject": lambda self, *v: dict(zip(v[0::2], v[1::2])),
            "split": lambda self, s, sep: s.split(sep),
            "trim": lambda self, s: s.strip(),
            "tolower": lambda self, s: s.lower(),
            "toupper": lambda self, s: s.upper(),
            "union": lambda self, *v: _union(*v),
            "format": lambda self, fmt, *v: re.sub(
                r"\{(\d+)\}", lambda m: str(v[int(m.group(1))]), fmt
            ),
            "uniquestring": lambda self, *v: (
                hashlib.sha256("|".join(v).encode())
                .hexdigest()[:13]
                .translate(str.maketrans("0123456789abcdef", "abcdefghij012345"))
            ),
            "resourcegroup": lambda self: {
                "name": self.resource_group,
                "id": f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}",
                "location": "westeurope",
            },
            "resourceid": lambda self, *v: _resource_id(self, *v),
            "subscriptionresourceid": lambda self, *v: _subscription_resource_id(self, *v),
            "extensionresourceid": lambda self, scope, type_, *names: (
                f"{scope}/providers/{_provider_path(type_, names)}"
            ),
            "subscription": lambda self: {
                "id": f"/subscriptions/{self.subscription_id}",
                "subscriptionId": self.subscription_id,
            },
            "guid": lambda self, *v: _guid(*v),
            "equals": lambda self, a, b: a == b,
            "or": lambda self, *v: any(v),
            "first": lambda self, v: v[0],
        }
    )


_COPY = "copyIndex()"  # the lambda-scope key under which expand() passes the copy index
# A fixed namespace: the stand-in's guid() is deterministic in its arguments, as ARM's is; its
# values are not ARM's, so tests compare guids with each other, never with a literal from Azure.
_GUID_NAMESPACE = uuid.UUID("6f6e2d1c-7265-7469-6572-2d7465737473")


def _union(*values):
    if all(isinstance(v, list) for v in values):  # arrays: in order, without duplicates
        out = []
        for v in values:
            out.extend(x for x in v if x not in out)
        return out
    if all(isinstance(v, dict) for v in values):
        return {k: x for v in values for k, x in v.items()}
    raise TypeError(f"union() takes arrays or objects, not {values!r}")


def _guid(*args: str) -> str:
    if not args or not all(isinstance(a, str) for a in args):
        raise TypeError(f"guid() takes one or more strings, not {args!r}")
    return str(uuid.uuid5(_GUID_NAMESPACE, "-".join(args)))


def _provider_path(type_: str, names: tuple[str, ...]) -> str:
    namespace, *types = type_.split("/")
    if len(types) != len(names):
        raise ValueError(f"{type_} needs {len(types)} name(s), got {names!r}")
    return namespace + "/" + "/".join(f"{t}/{n}" for t, n in zip(types, names))


def _subscription_resource_id(self: Evaluator, type_: str, *names: str) -> str:
    return f"/subscriptions/{self.subscription_id}/providers/{_provider_path(type_, names)}"


def _resource_id(self: Evaluator, *args: str) -> str:
    group = self.resource_group
    if "/" not in args[0]:  # resourceId(resourceGroupName, type, names...)
        group, args = args[0], args[1:]
    type_, names = args[0], args[1:]
    namespace, *types = type_.split("/")
    path = "/".join(f"{t}/{n}" for t, n in zip(types, names))
    return (
        f"/subscriptions/{self.subscription_id}/resourceGroups/{group}/providers/{namespace}/{path}"
    )


# -- the template's structure -----------------------------------------------------------------


@dataclass(frozen=True)
class Scope:
    """One template body with its own parameters and variables: the top level or a nested one."""

    template: dict[str, Any]
    deployment: dict[str, Any] | None  # the Microsoft.Resources/deployments resource, if nested


def scopes(template: dict[str, Any]) -> Iterator[Scope]:
    yield Scope(template, None)
    for resource in template.get("resources", []):
        if resource["type"] == "Microsoft.Resources/deployments":
            props = resource["properties"]
            if props.get("expressionEvaluationOptions", {}).get("scope") != "inner":
                raise AssertionError("nested templates must use inner scope (own parameters)")
            for inner in scopes(props["template"]):
                yield Scope(inner.template, inner.deployment or resource)


def all_resources(template: dict[str, Any]) -> list[tuple[dict[str, Any], Scope]]:
    return [(r, s) for s in scopes(template) for r in s.template.get("resources", [])]


def resources_of(template: dict[str, Any], type_: str) -> list[tuple[dict[str, Any], Scope]]:
    return [(r, s) for r, s in all_resources(template) if r["type"].lower() == type_.lower()]


def strings(value: Any) -> Iterator[str]:
    """Every string in a JSON value (keys included), depth first."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)


def own_strings(template: dict[str, Any]) -> Iterator[str]:
    """The strings of one scope, without the bodies of its nested inner-scope templates."""
    for key, value in template.items():
        if key != "resources":
            yield from strings(value)
    for resource in template.get("resources", []):
        if resource["type"] == "Microsoft.Resources/deployments":
            yield from strings({k: v for k, v in resource.items() if k != "properties"})
            props = resource["properties"]
            yield from strings({k: v for k, v in props.items() if k != "template"})
        else:
            yield from strings(resource)
