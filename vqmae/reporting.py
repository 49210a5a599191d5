"""A tiny document model rendered both as Markdown and as a self-contained HTML page.

Blocks: headings, paragraphs, tables, images (PNG embedded as base64 in HTML, linked in
Markdown), preformatted text. Used by ``vqmae report`` and by stages that write summaries.
"""

from __future__ import annotations

import base64
import html
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vqmae.io import atomic_write_text


@dataclass
class Document:
    title: str
    blocks: list[tuple[str, Any]] = field(default_factory=list)

    def heading(self, text: str, level: int = 2) -> None:
        self.blocks.append(("heading", (level, text)))

    def paragraph(self, text: str) -> None:
        self.blocks.append(("paragraph", text))

    def table(self, header: list[str], rows: list[list[Any]]) -> None:
        self.blocks.append(("table", (header, rows)))

    def image(self, path: str | Path, caption: str = "") -> None:
        if Path(path).is_file():
            self.blocks.append(("image", (Path(path), caption)))

    def code(self, text: str) -> None:
        self.blocks.append(("code", text))

    def markdown(self, text: str, base: str | Path | None = None) -> None:
        """Embed a Markdown fragment (headings demoted below the report's own). Its image links
        are relative to ``base`` (the folder the fragment was written for): Markdown links are
        rewritten relative to the report, HTML embeds the images in place."""
        self.blocks.append(("markdown", (text, Path(base) if base is not None else None)))

    def verdict(self, lines: list[dict[str, Any]], title: str = "Verdict") -> None:
        """Claims answered plainly: ``{"claim", "answer", "detail"}`` each (first screen of the page)."""
        self.blocks.append(("verdict", (title, lines)))

    # -------------------------------------------------------------------------- render

    def to_markdown(self, base_dir: str | Path) -> str:
        base_dir = Path(base_dir)
        out = [f"# {self.title}", ""]
        for kind, body in self.blocks:
            if kind == "heading":
                level, text = body
                out += ["#" * level + " " + text, ""]
            elif kind == "paragraph":
                out += [body, ""]
            elif kind == "table":
                header, rows = body
                out.append("| " + " | ".join(map(str, header)) + " |")
                out.append("|" + "---|" * len(header))
                for r in rows:
                    out.append("| " + " | ".join(_cell(c) for c in r) + " |")
                out.append("")
            elif kind == "image":
                path, caption = body
                rel = os.path.relpath(path, base_dir)
                out += [f"![{caption}]({rel})", f"*{caption}*" if caption else "", ""]
            elif kind == "code":
                out += ["```", body.rstrip(), "```", ""]
            elif kind == "markdown":
                text, base = body
                text = _relink(text, base, base_dir) if base is not None else text
                out += [_demote_headings(text.rstrip()), ""]
            elif kind == "verdict":
                title, lines = body
                out += [f"## {title}", ""]
                out += [f"- **{v['claim']}** **{v['answer']}** — {v.get('detail', '')}" for v in lines]
                out.append("")
        return "\n".join(out).rstrip() + "\n"

    def to_html(self) -> str:
        parts = [
            "<!DOCTYPE html><html><head><meta charset='utf-8'>",
            f"<title>{html.escape(self.title)}</title>",
            "<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;"
            "padding:0 1em;color:#222;line-height:1.45}table{border-collapse:collapse;margin:1em 0}"
            "th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#f3f3f3}"
            "td:first-child,th:first-child{text-align:left}img{max-width:100%;border:1px solid #eee}"
            "figure{margin:1em 0}figcaption{color:#555;font-size:90%}pre{background:#f7f7f7;"
            "padding:.8em;overflow-x:auto}h1{border-bottom:2px solid #333}"
            "h2{border-bottom:1px solid #ccc;margin-top:2em}#verdict{border:2px solid #333;padding:.2em 1em;"
            "margin:1em 0}#verdict h2{margin-top:.3em;border:0}#verdict ul{padding-left:1.2em}"
            "#verdict li{margin:.3em 0}.answer{font-weight:bold;padding:0 .4em;border-radius:3px}"
            ".yes{background:#d4f4d4}.no{background:#f8d0d0}.nd{background:#f4ecc4}.nr{background:#e4e4e4}"
            ".detail{color:#555;font-size:90%}</style></head><body>",
            f"<h1>{html.escape(self.title)}</h1>",
        ]
        for kind, body in self.blocks:
            if kind == "heading":
                level, text = body
                parts.append(f"<h{level}>{html.escape(text)}</h{level}>")
            elif kind == "paragraph":
                parts.append(f"<p>{_inline(body)}</p>")
            elif kind == "table":
                header, rows = body
                parts.append("<table><tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in header) + "</tr>")
                for r in rows:
                    parts.append("<tr>" + "".join(f"<td>{html.escape(_cell(c))}</td>" for c in r) + "</tr>")
                parts.append("</table>")
            elif kind == "image":
                path, caption = body
                parts.append(_figure(path, caption))
            elif kind == "code":
                parts.append(f"<pre>{html.escape(body)}</pre>")
            elif kind == "markdown":
                text, base = body
                parts.append(markdown_to_html(_demote_headings(text), base))
            elif kind == "verdict":
                title, lines = body
                items = "".join(
                    f"<li><b>{html.escape(v['claim'])}</b> <span class='answer {_answer_class(v['answer'])}'>"
                    f"{html.escape(v['answer'])}</span> <span class='detail'>{_inline(v.get('detail', ''))}"
                    "</span></li>" for v in lines)
                parts.append(f"<section id='verdict'><h2>{html.escape(title)}</h2><ul>{items}</ul></section>")
        parts.append("</body></html>")
        return "\n".join(parts)

    def write(self, out_dir: str | Path, stem: str = "report") -> tuple[Path, Path]:
        out_dir = Path(out_dir)
        md = atomic_write_text(out_dir / f"{stem}.md", self.to_markdown(out_dir))
        page = atomic_write_text(out_dir / f"{stem}.html", self.to_html())
        return md, page


_IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)\)")


def _relink(text: str, base: Path, out_dir: Path) -> str:
    """Image links relative to ``base`` -> relative to ``out_dir``."""
    def fix(m: re.Match) -> str:
        target = m.group(2)
        if "://" in target or target.startswith(("/", "data:")):
            return m.group(0)
        if not (base / target).is_file():  # never a broken link in the report
            return f"*(image not found: {target})*"
        return f"![{m.group(1)}]({os.path.relpath(base / target, out_dir)})"

    return _IMAGE.sub(fix, text)


def _figure(path: Path, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return (f"<figure><img src='data:image/png;base64,{data}' alt='{html.escape(caption)}'>"
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _answer_class(answer: str) -> str:
    return {"yes": "yes", "no": "no", "not run": "nr"}.get(answer, "nd")


def _cell(c: Any) -> str:
    if isinstance(c, float):
        return f"{c:.4g}"
    return "" if c is None else str(c)


def _inline(text: str) -> str:
    """Escape, then render `code` spans and **bold**."""
    escaped = re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", html.escape(text))
    pieces = escaped.split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(pieces))


def _demote_headings(text: str, by: int = 2) -> str:
    return "\n".join(("#" * by + line) if line.startswith("#") else line for line in text.splitlines())


def markdown_to_html(text: str, base: Path | None = None) -> str:
    """The Markdown subset vqmae writes: headings, pipe tables, bullet lists, code fences, paragraphs,
    images on their own line (embedded from ``base``; without ``base``, or missing, left out)."""
    out: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            j = i + 1
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            out.append("<pre>" + html.escape("\n".join(lines[i + 1:j])) + "</pre>")
            i = j + 1
        elif line.startswith("#"):
            level = min(6, len(line) - len(line.lstrip("#")))
            out.append(f"<h{level}>{_inline(line.lstrip('#').strip())}</h{level}>")
            i += 1
        elif line.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                cells = [c.strip() for c in lines[i].strip().strip("|").split("|")]
                if not all(set(c) <= set("-: ") for c in cells):
                    rows.append(cells)
                i += 1
            if rows:
                out.append("<table><tr>" + "".join(f"<th>{_inline(c)}</th>" for c in rows[0]) + "</tr>")
                out += ["<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in rows[1:]]
                out.append("</table>")
        elif line.lstrip().startswith(("- ", "* ", "> ")):
            items = []
            while i < len(lines) and lines[i].lstrip().startswith(("- ", "* ", "> ")):
                items.append(f"<li>{_inline(lines[i].lstrip()[2:])}</li>")
                i += 1
            out.append("<ul>" + "".join(items) + "</ul>")
        elif line.strip().startswith("!["):
            m = _IMAGE.match(line.strip())
            if m and base is not None and (base / m.group(2)).is_file():
                out.append(_figure(base / m.group(2), m.group(1)))
            i += 1
        elif line.strip():
            para = []
            while i < len(lines) and lines[i].strip() and not lines[i].startswith(("#", "|", "```")):
                para.append(lines[i].strip())
                i += 1
            out.append(f"<p>{_inline(' '.join(para))}</p>")
        else:
            i += 1
    return "\n".join(out)
