"""Test oracle: renders chat templates with Python jinja2 exactly as transformers'
apply_chat_template does (ImmutableSandboxedEnvironment with trim_blocks and lstrip_blocks, the
loopcontrols extension, and transformers' tojson / raise_exception / strftime_now / namespace).

    render_chat_oracle.py REQUEST.json RESULT.json

REQUEST: {"cases": [{"template": TEXT, "messages": [...], "tools": [...] or null,
          "add_generation_prompt": bool, "bos_token": str, "eos_token": str}, ...]}
          (bos_token / eos_token absent: undefined in the template)
RESULT:  [{"ok": true, "text": RENDERED} |
          {"ok": false, "error": MESSAGE, "raised": true when raise_exception raised it}, ...]
"""
import json
import sys
from datetime import datetime

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment


def make_env():
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    def strftime_now(fmt):
        return datetime.now().strftime(fmt)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    env.globals["namespace"] = jinja2.utils.Namespace
    return env


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        request = json.load(f)
    env = make_env()
    results = []
    for case in request["cases"]:
        try:
            template = env.from_string(case["template"])
            # transformers passes tools and documents (None when absent) and the special tokens.
            specials = {k: case[k] for k in ("bos_token", "eos_token") if k in case}
            text = template.render(messages=case["messages"], tools=case.get("tools"), documents=None,
                                   add_generation_prompt=case.get("add_generation_prompt", False),
                                   **specials)
            results.append({"ok": True, "text": text})
        except Exception as e:  # noqa: BLE001 - any failure is an expected error to compare
            raised = type(e) is jinja2.exceptions.TemplateError
            results.append({"ok": False, "error": str(e), "raised": raised})
    with open(sys.argv[2], "w", encoding="utf-8") as f:
        json.dump(results, f, ensure_ascii=False)


if __name__ == "__main__":
    main()
