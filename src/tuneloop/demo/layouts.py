"""The demo domain: UI layout trees in JSON, as a Figma-style layout generator would emit them.

A layout is a tree of nodes: ``FRAME`` (auto-layout container with ``layout``, ``gap``,
``padding`` and ``children``), ``TEXT`` (``text`` and ``style``) and ``INSTANCE`` (a design-system
``component``, optionally with ``text``). The generator below is deterministic in the screen's
category and platform, with the product's subject woven into the copy, so a student can learn it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

Node = dict[str, Any]

PLATFORMS = {"mobile": (390, 844), "tablet": (834, 1194), "web": (1440, 900)}
CATEGORIES = (
    "dashboard",
    "settings",
    "profile",
    "table",
    "calendar",
    "document",
    "message",
    "login",
)
SUBJECTS = (
    "fitness tracking",
    "personal banking",
    "recipe sharing",
    "travel booking",
    "music streaming",
    "project management",
    "online learning",
    "food delivery",
    "real estate",
    "pet care",
    "language learning",
    "event tickets",
    "car rental",
    "home energy",
    "podcast hosting",
    "plant care",
    "job search",
    "photo editing",
    "team chat",
    "bike sharing",
)
PROMPT_TEMPLATES = (
    "Design a {platform} {category} screen for a {subject} app.",
    "Create a {category} screen for a {subject} product on {platform}.",
    "I need a {platform} {category} page for our {subject} service. Return only the JSON layout.",
    "Generate the layout of a {category} view for a {subject} app ({platform}).",
)
# Phrasings that the simulated app and the synthetic examples never use. The demo evaluates the
# student on them too: a student that follows requests handles them; one that only recognises the
# training templates does not.
HELD_OUT_TEMPLATES = (
    "Could you sketch the {category} screen of our {subject} app? It runs on {platform}.",
    "{platform} UI wanted: the {category} part of a {subject} tool, as a JSON layout tree.",
    "Please lay out a {category} view for {subject}, target platform {platform}.",
)
SYSTEM_PROMPT = (
    "You are a UI layout generator. You always respond with a single JSON object describing "
    "the layout tree. Do not include explanations, markdown, or comments."
)
NODE_TYPES = {"FRAME", "TEXT", "INSTANCE"}


@dataclass(frozen=True)
class ScreenRequest:
    category: str
    platform: str
    subject: str


def prompt_for(request: ScreenRequest, template_index: int = 0) -> str:
    template = PROMPT_TEMPLATES[template_index % len(PROMPT_TEMPLATES)]
    return template.format(**request.__dict__)


def held_out_prompt(request: ScreenRequest, template_index: int = 0) -> str:
    """The request in a phrasing no training example uses (``HELD_OUT_TEMPLATES``)."""
    template = HELD_OUT_TEMPLATES[template_index % len(HELD_OUT_TEMPLATES)]
    return template.format(**request.__dict__)


def _find_word(words: tuple[str, ...], text: str) -> str | None:
    # Whole words only: "table" must not match inside "tablet".
    return next((w for w in words if re.search(rf"\b{re.escape(w)}\b", text)), None)


def parse_request(prompt: str) -> ScreenRequest:
    """Read category, platform and subject back out of a prompt (unknown parts get defaults)."""
    lowered = prompt.lower()
    category = _find_word(CATEGORIES, lowered) or "dashboard"
    platform = _find_word(tuple(PLATFORMS), lowered) or "mobile"
    subject = next((s for s in SUBJECTS if s in lowered), "")
    if not subject:
        match = re.search(r"for (?:a |an |our )?([a-z ]+?) (?:app|product|service)", lowered)
        subject = match.group(1) if match else "product"
    return ScreenRequest(category, platform, subject)


def _text(name: str, text: str, style: str = "Body") -> Node:
    return {"type": "TEXT", "name": name, "text": text, "style": style}


def _instance(component: str, text: str | None = None) -> Node:
    # Instances are named by their component, as in a design file; no separate name.
    node: Node = {"type": "INSTANCE", "component": component}
    if text is not None:
        node["text"] = text
    return node


def _frame(name: str, layout: str, children: list[Node], gap: int = 16, padding: int = 0) -> Node:
    node: Node = {"type": "FRAME", "name": name, "layout": layout}
    if gap:
        node["gap"] = gap
    if padding:
        node["padding"] = padding
    return {**node, "children": children}


def _body(category: str, subject: str) -> list[Node]:
    title = subject.title()
    if category == "dashboard":
        return [
            _frame(
                "Stats",
                "HORIZONTAL",
                [_instance("StatCard", "Today"), _instance("StatCard", "This week")],
            ),
            _instance("Chart/Line"),
            _frame(
                "Recent",
                "VERTICAL",
                [_text("Section title", "Recent activity", "Subtitle"), _instance("ListItem")],
                gap=8,
            ),
        ]
    if category == "settings":
        return [
            _frame(
                "Preferences",
                "VERTICAL",
                [
                    _instance("ListItem/Toggle", "Notifications"),
                    _instance("ListItem/Toggle", "Dark mode"),
                    _instance("ListItem/Chevron", "Account"),
                ],
                gap=8,
            ),
            _instance("Button/Destructive", "Log out"),
        ]
    if category == "profile":
        return [
            _instance("Avatar/Large"),
            _text("Name", "Alex Morgan", "Title"),
            _text("Bio", f"Loves {subject}", "Body"),
            _frame(
                "Actions",
                "HORIZONTAL",
                [
                    _instance("Button/Primary", "Edit profile"),
                    _instance("Button/Secondary", "Share"),
                ],
                gap=8,
            ),
        ]
    if category == "table":
        return [
            _instance("SearchField", f"Search {subject}"),
            _instance("Table/Default"),
            _instance("Pagination"),
        ]
    if category == "calendar":
        return [
            _instance("SegmentedControl", "Week"),
            _instance("CalendarGrid"),
            _frame("Events", "VERTICAL", [_instance("EventCard", f"{title} session")], gap=8),
        ]
    if category == "document":
        return [
            _instance("Toolbar/Editor"),
            _text("Heading", f"{title} guide", "Heading"),
            _text("Paragraph", "Start writing here.", "Body"),
        ]
    if category == "message":
        return [
            _frame(
                "Thread",
                "VERTICAL",
                [
                    _instance("ChatBubble/Incoming", "Hi!"),
                    _instance("ChatBubble/Outgoing", "Hello"),
                ],
                gap=8,
            ),
            _instance("MessageInput", "Write a message"),
        ]
    if category == "login":
        return [
            _instance("Logo"),
            _instance("TextField", "Email"),
            _instance("TextField/Password", "Password"),
            _instance("Button/Primary", "Sign in"),
        ]
    raise ValueError(f"unknown category {category!r}")


def generate_layout(request: ScreenRequest) -> Node:
    """The reference layout for a request: header, category body, platform navigation."""
    width, height = PLATFORMS[request.platform]
    padding = 16 if request.platform == "mobile" else 32
    header = _text("Title", request.category.title(), "Heading")
    content = _frame(
        "Content",
        "VERTICAL",
        [header, *_body(request.category, request.subject)],
        gap=16,
        padding=padding,
    )
    if request.platform == "web":
        children = [_instance("Navigation/Sidebar"), content]
        layout = "HORIZONTAL"
    else:
        children = [content, _instance("Navigation/TabBar")]
        layout = "VERTICAL"
    root = _frame(f"{request.category.title()} screen", layout, children, gap=0)
    return {**root, "width": width, "height": height}


def screen_match(request: ScreenRequest, layout: Any) -> tuple[bool, bool]:
    """(category right, platform right) of a parsed layout: what a user checks at a glance.

    The category is the root frame's name (``"Settings screen"``); the platform is the root's size.
    """
    if not isinstance(layout, dict):
        return False, False
    name = str(layout.get("name", "")).lower()
    category_right = name == f"{request.category} screen"
    width, height = PLATFORMS[request.platform]
    platform_right = layout.get("width") == width and layout.get("height") == height
    return category_right, platform_right


def dumps(layout: Node) -> str:
    """Compact JSON: what the generator returns and what the student learns to write."""
    return json.dumps(layout, separators=(",", ":"))


def validation_score(layout: Any) -> float:
    """The app's own schema check: the share of nodes that are well-formed (0 for non-trees)."""
    if not isinstance(layout, dict):
        return 0.0
    good = total = 0
    stack = [layout]
    while stack:
        node = stack.pop()
        total += 1
        if not isinstance(node, dict) or node.get("type") not in NODE_TYPES:
            continue
        if node["type"] != "INSTANCE" and "name" not in node:
            continue
        kind = node["type"]
        if kind == "FRAME":
            children = node.get("children")
            if isinstance(children, list) and node.get("layout") in ("VERTICAL", "HORIZONTAL"):
                good += 1
                stack.extend(children)
        elif (kind == "TEXT" and isinstance(node.get("text"), str)) or (
            kind == "INSTANCE" and isinstance(node.get("component"), str)
        ):
            good += 1
    return good / total
