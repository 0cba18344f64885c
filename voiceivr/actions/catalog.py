"""Every action this node offers, in one registry: the enabled plugins'
(:func:`voiceivr.actions.registry.plugin_actions`) and the HTTP actions of the backends file
(``plugins.backends``, :mod:`voiceivr.actions.webhooks`).

Apart from :mod:`voiceivr.actions.registry` because the backends file's actions are built from the registry's
:class:`~voiceivr.actions.registry.Action`: the registry is the model, this module puts the node's actions in it.
"""

from __future__ import annotations

from voiceivr.actions.registry import ActionRegistry, plugin_actions
from voiceivr.settings import Settings


def plugin_registry(settings: Settings | None = None) -> ActionRegistry:
    """Every action a dialplan may name on this node: those of the enabled plugins and of the backends file
    (``plugins.backends``). Two sources declaring one action name is an error naming both."""
    from voiceivr import plugins
    from voiceivr.settings import load_settings

    settings = settings or load_settings()[0]
    registry = ActionRegistry()
    origin: dict[str, str] = {}
    by_plugin = plugin_actions(settings)
    for name, actions in by_plugin.items():
        for action in actions:
            if action.name in origin:
                raise plugins.PluginError(f"action {action.name!r} is provided by two enabled plugins: "
                                          f"{origin[action.name]!r} and {name!r}",
                                          hint="enable only one of them (plugins.enabled)")
            try:
                registry.register(action)
            except ValueError as exc:
                raise plugins.describe_error(name, plugins.ACTIONS, str(exc)) from None
            origin[action.name] = name
    if settings is not None and settings.plugins.backends:
        _add_backend_actions(registry, origin, settings.plugins.backends)
    sources = [f"the enabled plugins ({', '.join(by_plugin)})"] if by_plugin else []
    if settings is not None and settings.plugins.backends:
        sources.append(f"the backends file {settings.plugins.backends}")
    registry.origin = (" and ".join(sources) if sources
                       else f"no plugin: none is enabled ({plugins.ENABLE_HINT}), and no plugins.backends file")
    return registry


def _add_backend_actions(registry: ActionRegistry, origin: dict[str, str], path: str) -> None:
    """The HTTP actions of the node's backends file (voiceivr.actions.webhooks), beside the plugins' actions."""
    from voiceivr import plugins
    from voiceivr.actions.webhooks import node

    for action in node(path).actions:
        if action.name in origin:
            raise plugins.PluginError(f"action {action.name!r} is declared by the backends file {path} and provided "
                                      f"by the enabled plugin {origin[action.name]!r}",
                                      hint="rename one of them, or do not enable that plugin")
        registry.register(action)
        origin[action.name] = path
