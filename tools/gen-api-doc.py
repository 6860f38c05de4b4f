#!/usr/bin/env python3
"""Generate docs/api.md from the doc comments of the public headers.

The public API is include/weft.h plus the include/weft/*.h it includes, in
that order. In each header:
  - the opening block comment becomes the section's introduction;
  - a separator comment  /* ---- name --- */  becomes a sub-heading;
  - a doc comment  /** ... */  documents the declarations that follow it up to
    the next blank line or comment (several functions may share one comment);
  - public declarations without a doc comment are listed under their
    section too, so nothing exported is missing from the reference.

Usage: gen-api-doc.py [--check] [ROOT]   (ROOT: the source tree, default ..)
--check exits 1 when docs/api.md differs from what would be generated (a
meson test in suite 'packaging' runs it).
"""
import os
import re
import sys

SEP_RE = re.compile(r'^/\*\s*-+\s*([\w .,/+-]+?)\s*-+\s*\*/$')
INCLUDE_RE = re.compile(r'^#include\s+"(weft/[\w.]+)"')


def comment_text(raw):
    """The text of a block comment, its frame (/*, *, */) removed."""
    body = raw.strip()
    body = re.sub(r'^/\*\*?', '', body)
    body = re.sub(r'\*/$', '', body)
    lines = []
    for line in body.split('\n'):
        line = re.sub(r'^\s*\* ?', '', line, count=1) if line.strip().startswith('*') else line.strip()
        lines.append(line.rstrip())
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    return '\n'.join(lines)


def as_markdown(text):
    """Comment text to Markdown. "  - item" lines become list items (their
    indented continuation lines joined to them); a block indented by 4+
    spaces or a tab after a blank line is code; the rest is prose."""
    out = []
    mode = None         # None, 'list', 'code'
    prev_blank = True
    for line in text.split('\n'):
        blank = not line.strip()
        indented = line.startswith('    ') or line.startswith('\t')
        if mode == 'code':
            if blank or indented:
                out.append(line[4:] if line.startswith('    ') else line.lstrip('\t'))
                prev_blank = blank
                continue
            while out and not out[-1].strip():
                out.pop()
            out += ['```', '']
            mode = None
        m = re.match(r'^\s{0,3}[-*] (.*)$', line)
        if m:
            if mode != 'list' and out and out[-1].strip():
                out.append('')
            out.append('- ' + m.group(1).strip())
            mode = 'list'
        elif mode == 'list' and not blank and line[:1] in (' ', '\t'):
            out[-1] += ' ' + line.strip()
        elif indented and prev_blank:
            out += ['```c', line[4:] if line.startswith('    ') else line.lstrip('\t')]
            mode = 'code'
        else:
            if mode == 'list' and not blank:
                out.append('')
            mode = None if blank or mode != 'list' else mode
            out.append(line.strip() if not blank else '')
        prev_blank = blank
    if mode == 'code':
        while out and not out[-1].strip():
            out.pop()
        out.append('```')
    return '\n'.join(out)


def clean_decl(decl):
    decl = re.sub(r'\bWEFT_API\s+', '', decl)
    return decl.strip()


def decl_names(decl):
    names = re.findall(r'\(\*\s*(weft_\w+)\)', decl)
    if not names:
        names = re.findall(r'\b(weft_\w+)\s*\(', decl)
    if not names:
        m = re.match(r'typedef\s+struct\s+\w+\s*\{.*\}\s*(weft_\w+)\s*;', decl, re.S)
        names = [m.group(1)] if m else []
    if not names:
        m = re.search(r'\b(?:struct|enum|typedef struct|union)\s+(weft_\w+)', decl)
        if m:
            names = [m.group(1)]
        else:
            names = re.findall(r'#define\s+(WEFT_\w+)', decl)
    seen, out = set(), []
    for n in names:
        if n not in seen:
            seen.add(n)
            out.append(n)
    return out


def parse_header(path):
    """Yield ('intro', text), ('section', name), ('item', doc, decl)."""
    with open(path) as f:
        src = f.read()
    i, n = 0, len(src)
    first_comment = True
    pending_doc = None
    while i < n:
        if src.startswith('/*', i):
            j = src.index('*/', i) + 2
            raw = src[i:j]
            i = j
            if first_comment:
                first_comment = False
                yield ('intro', comment_text(raw))
                continue
            m = SEP_RE.match(raw.strip())
            if m:
                yield ('section', m.group(1).strip())
                pending_doc = None
            elif raw.startswith('/**'):
                pending_doc = comment_text(raw)
            else:
                pending_doc = None      # an ordinary comment: not documentation
            continue
        # a line of code
        j = src.find('\n', i)
        j = n if j < 0 else j
        line = src[i:j]
        stripped = line.strip()
        if not stripped:
            pending_doc = None if pending_doc == '' else pending_doc
            i = j + 1
            continue
        if stripped.startswith('#') and not stripped.startswith('#define WEFT_'):
            i = j + 1
            continue
        if (stripped.startswith('#define WEFT_') and not stripped.endswith('_H')
                and not stripped.startswith('#define WEFT_API')):
            yield ('item', pending_doc, stripped)
            i = j + 1
            continue
        if re.match(r'(WEFT_API|typedef|struct|enum)\b', stripped):
            # a declaration: up to ';' at brace depth 0
            k, depth = i, 0
            while k < n:
                c = src[k]
                if src.startswith('/*', k):
                    k = src.index('*/', k) + 2
                    continue
                if c == '{':
                    depth += 1
                elif c == '}':
                    depth -= 1
                elif c == ';' and depth == 0:
                    break
                k += 1
            decl = src[i:k + 1]
            i = k + 1
            if stripped.startswith('extern "C"') or re.fullmatch(r'struct\s+\w+\s*;', decl.strip()):
                continue            # linkage block, forward declaration of a system type
            if re.match(r'typedef\s+struct\s+weft_\w+\s+weft_\w+;', decl.strip()) and pending_doc is None:
                yield ('item', None, decl.strip())
                continue
            yield ('item', pending_doc, decl)
            # a doc comment covers the declarations up to the next blank line
            rest = src[i:]
            nxt = re.match(r'[ \t]*\n([ \t]*\n)?', rest)
            if nxt and nxt.group(1):
                pending_doc = None
            continue
        i = j + 1


def header_order(root):
    top = os.path.join(root, 'include', 'weft.h')
    order = [top]
    with open(top) as f:
        for line in f:
            m = INCLUDE_RE.match(line.strip())
            if m:
                order.append(os.path.join(root, 'include', m.group(1)))
    return order


def generate(root):
    out = ['# weft API reference', '',
           '<!-- Generated by tools/gen-api-doc.py from the header comments; do not edit. -->',
           '<!-- Regenerate: python3 tools/gen-api-doc.py > docs/api.md -->', '']
    headers = header_order(root)
    out.append('Headers: ' + ', '.join('`%s`' % os.path.relpath(h, os.path.join(root, 'include'))
                                       for h in headers) + ' (include only `weft.h`).')
    out.append('')
    for h in headers:
        rel = os.path.relpath(h, os.path.join(root, 'include'))
        out += ['## `%s`' % rel, '']
        groups = []     # consecutive declarations sharing one doc comment
        for ev in parse_header(h):
            if ev[0] == 'item' and ev[1] is not None and groups and \
                    groups[-1][0] == 'item' and groups[-1][1] is ev[1]:
                groups[-1][2].append(ev[2])
            elif ev[0] == 'item':
                groups.append(('item', ev[1], [ev[2]]))
            else:
                groups.append(ev)
        for ev in groups:
            if ev[0] == 'intro':
                text = re.sub(r'^weft/\w+\.h: included by weft\.h; do not include directly\.\s*',
                              '', ev[1])
                out += [as_markdown(text), '']
            elif ev[0] == 'section':
                out += ['### %s' % (ev[1][0].upper() + ev[1][1:]), '']
            else:
                _, doc, decls = ev
                decls = [clean_decl(d) for d in decls]
                names = [x for d in decls for x in decl_names(d)]
                title = ', '.join('`%s`' % x for x in names) or '`%s`' % decls[0].split('\n')[0]
                out += ['#### %s' % title, '', '```c'] + decls + ['```', '']
                if doc:
                    out += [as_markdown(doc), '']
    text = '\n'.join(out)
    text = re.sub(r'\n{3,}', '\n\n', text)
    return text.rstrip() + '\n'


def main(argv):
    check = '--check' in argv
    args = [a for a in argv[1:] if a != '--check']
    root = args[0] if args else os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
    text = generate(root)
    target = os.path.join(root, 'docs', 'api.md')
    if check:
        try:
            with open(target) as f:
                current = f.read()
        except OSError:
            current = None
        if current != text:
            sys.stderr.write('docs/api.md is out of date: run python3 tools/gen-api-doc.py > docs/api.md\n')
            return 1
        print('docs/api.md is up to date')
        return 0
    sys.stdout.write(text)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
