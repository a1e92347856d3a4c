"""Which adapters each tool server may run, checked when they are registered.

    @register("siem", "splunk")
    class SplunkSiem(HttpBackend, SiemBackend): ...

register() refuses, at import, with a TypeError naming the class and what is wrong: a class that
does not subclass the server's interface (INTERFACES), that leaves one of its abstract methods
unimplemented, implements one as a plain function or with other parameters, has no `source`, or
declares its parameters badly. So a broken adapter stops every process that imports the
adapters (the console when it first looks one up, the tests at collection) instead of a tool server that will not
start. It needs no Django: the server process (`python -m toolserver.servers`) uses it to find
its adapter.

The built-in adapters register when their module is imported, which toolserver.adapters does
when one is first looked up there: callers use its adapter_class() and adapter_names().
"""

import inspect
from collections.abc import Callable

from toolserver.adapters.base import (
    Backend,
    EdrBackend,
    EdrResponseBackend,
    IdentityBackend,
    IntelBackend,
    Param,
    SiemBackend,
    TicketingBackend,
    interface_methods,
)

# The interface each tool server's adapter implements (server names: toolserver.catalog.SERVERS).
INTERFACES: dict[str, type[Backend]] = {
    "siem": SiemBackend,
    "edr": EdrBackend,
    "edr-response": EdrResponseBackend,
    "identity": IdentityBackend,
    "ticketing": TicketingBackend,
    "intel": IntelBackend,
}


class Registry:
    def __init__(self):
        self._adapters: dict[str, dict[str, type[Backend]]] = {server: {} for server in INTERFACES}

    def register(self, server: str, name: str) -> Callable[[type], type]:
        """A class decorator: `cls` runs `server` when an admin picks adapter `name`."""

        def add(cls: type) -> type:
            problems = refusals(server, cls)
            if problems:
                raise TypeError(
                    f"adapter {cls.__module__}.{cls.__qualname__} cannot serve {server!r}: {'; '.join(problems)}"
                )
            if not name or not name.replace("-", "").replace("_", "").isalnum() or len(name) > 40:
                raise TypeError(
                    f"adapter {cls.__qualname__}: {name!r} is not a name (letters, digits, - and _, at most 40)"
                )
            known = self._adapters[server].get(name)
            if known is not None and known is not cls:
                raise TypeError(
                    f"adapter {cls.__qualname__}: {server!r} already has an adapter {name!r} ({known.__qualname__})"
                )
            self._adapters[server][name] = cls
            return cls

        return add

    def unregister(self, server: str, name: str) -> None:
        self._adapters[server].pop(name, None)

    def adapter_class(self, server: str, name: str) -> type[Backend] | None:
        return self._adapters.get(server, {}).get(name)

    def adapter_names(self, server: str) -> list[str]:
        return sorted(self._adapters.get(server, {}))

    def registered(self) -> list[tuple[str, str, type[Backend]]]:
        """Every (server, adapter name, class)."""
        return [(server, name, cls) for server, named in self._adapters.items() for name, cls in sorted(named.items())]


def refusals(server: str, cls: type) -> list[str]:
    """Why `cls` cannot be `server`'s adapter (empty: it can)."""
    interface = INTERFACES.get(server)
    if interface is None:
        return [f"there is no tool server {server!r} (one of {', '.join(INTERFACES)})"]
    if not isinstance(cls, type) or not issubclass(cls, interface):
        return [f"it does not subclass {interface.__name__}"]
    problems = []
    missing = sorted(getattr(cls, "__abstractmethods__", ()))
    if missing:
        problems.append(f"it does not implement {', '.join(missing)} of {interface.__name__}")
    for method_name, declared in interface_methods(interface).items():
        if method_name in missing:
            continue
        implemented = getattr(cls, method_name)
        if not inspect.iscoroutinefunction(implemented):
            problems.append(f"{method_name} is not async")
        elif _positional(implemented) != _positional(declared):
            problems.append(
                f"{method_name} takes ({', '.join(_positional(implemented))}), not ({', '.join(_positional(declared))})"
            )
    if not isinstance(getattr(cls, "source", None), str) or not cls.source:
        problems.append("it has no `source` (e.g. 'lab:siem'), which every envelope names")
    problems += _param_problems(cls.params)
    return problems


def _positional(function) -> list[str]:
    return [
        parameter.name
        for parameter in inspect.signature(function).parameters.values()
        if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD) and parameter.name != "self"
    ]


def _param_problems(params) -> list[str]:
    if not isinstance(params, tuple | list) or not all(isinstance(param, Param) for param in params):
        return ["its `params` is not a tuple of Param"]
    problems = [problem for param in params for problem in param.problems()]
    names = [param.name for param in params]
    problems += [
        f"parameter {name!r} is declared twice" for name in sorted({name for name in names if names.count(name) > 1})
    ]
    return problems


registry = Registry()
register = registry.register
adapter_class = registry.adapter_class
adapter_names = registry.adapter_names
registered = registry.registered
