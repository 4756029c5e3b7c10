#!/usr/bin/env bash
# Hand probe of one running server, curl only: prints what each requirement area depends on.
# Usage: KEY=op_sk_... tests/interop/probe.sh http://127.0.0.1:PORT/v1 MODEL [SECTION...]
# Sections: auth models chat stream validation errors (default: all). Output is for reading;
# the curl lines it prints are the ones quoted as evidence in expected/<server>.yaml.
set -u
BASE=${1:?base url}
MODEL=${2:?model}
shift 2
SECTIONS=${*:-auth models chat stream validation errors}
KEY=${KEY:-op_sk_interop_main}
J='Content-Type: application/json'
CHAT="$BASE/chat/completions"
BODY="{\"model\":\"$MODEL\",\"messages\":[{\"role\":\"user\",\"content\":\"Say hello.\"}],\"max_tokens\":5}"

show() { # label, curl args...: status, content type, rate-limit headers, first 300 bytes of body
  local label=$1
  shift
  local out
  out=$(curl -s -m 10 -D /tmp/probe.h.$$ -o /tmp/probe.b.$$ -w '%{http_code} %{content_type}' "$@")
  printf '%-38s %s | rl:%s | %s\n' "$label" "$out" \
    "$(grep -i '^x-ratelimit\|^retry-after' /tmp/probe.h.$$ | tr -d '\r' | tr '\n' ' ')" \
    "$(head -c 300 /tmp/probe.b.$$ | tr '\n' ' ')"
}

for s in $SECTIONS; do
  echo "=== $s"
  case $s in
  auth)
    for ep in models chat; do
      if [ $ep = models ]; then a=("$BASE/models"); else a=("$CHAT" -H "$J" -d "$BODY"); fi
      show "$ep no-auth" "${a[@]}"
      show "$ep basic" -H "Authorization: Basic $KEY" "${a[@]}"
      show "$ep token" -H "Authorization: Token $KEY" "${a[@]}"
      show "$ep no-scheme" -H "Authorization: $KEY" "${a[@]}"
      show "$ep unprefixed" -H "Authorization: Bearer sk-unprefixed-123" "${a[@]}"
      show "$ep empty" -H "Authorization: Bearer " "${a[@]}"
      show "$ep unknown op_sk" -H "Authorization: Bearer op_sk_unknown_000" "${a[@]}"
      show "$ep good" -H "Authorization: Bearer $KEY" "${a[@]}"
    done
    ;;
  models)
    show "models" -H "Authorization: Bearer $KEY" "$BASE/models"
    curl -s -m 10 -H "Authorization: Bearer $KEY" "$BASE/models" | python3 -c '
import json, sys
try:
    d = json.load(sys.stdin)
except Exception as e:
    print("  not json:", e); sys.exit()
data = d.get("data") if isinstance(d, dict) else None
if not isinstance(data, list):
    print("  no data list:", str(d)[:200]); sys.exit()
ids = [m.get("id") for m in data]
print("  object=%r count=%d unique=%d owners=%s" % (d.get("object"), len(ids), len(set(ids)),
      sorted({str(m.get("owned_by")) for m in data})))
for m in data:
    print("  ", {k: type(v).__name__ for k, v in m.items()}, m.get("id"))'
    show "model by id" -H "Authorization: Bearer $KEY" "$BASE/models/$MODEL"
    show "model unknown id" -H "Authorization: Bearer $KEY" "$BASE/models/no-such-model-xyz"
    ;;
  chat)
    show "chat plain" -H "Authorization: Bearer $KEY" -H "$J" "$CHAT" -d "$BODY"
    cat /tmp/probe.b.$$
    echo
    show "chat documented t=0" -H "Authorization: Bearer $KEY" -H "$J" "$CHAT" -d "{\"model\":\"$MODEL\",\"messages\":[{\"role\":\"system\",\"content\":\"You are a helpful assistant.\"},{\"role\":\"user\",\"content\":\"What is the capital of France?\"}],\"max_tokens\":256,\"temperature\":0,\"stream\":false}"
    show "chat documented t=2" -H "Authorization: Bearer $KEY" -H "$J" "$CHAT" -d "{\"model\":\"$MODEL\",\"messages\":[{\"role\":\"system\",\"content\":\"You are a helpful assistant.\"},{\"role\":\"user\",\"content\":\"What is the capital of France?\"}],\"max_tokens\":256,\"temperature\":2,\"stream\":false}"
    show "chat max_tokens=1 long" -H "Authorization: Bearer $KEY" -H "$J" "$CHAT" -d "{\"model\":\"$MODEL\",\"messages\":[{\"role\":\"user\",\"content\":\"Count from 1 to 200, one number per line, and write a long essay about each number.\"}],\"max_tokens\":1}"
    ;;
  stream)
    echo "--- stream (raw, max_tokens 5)"
    curl -s -m 10 -N -D - -H "Authorization: Bearer $KEY" -H "$J" "$CHAT" \
      -d "{\"model\":\"$MODEL\",\"messages\":[{\"role\":\"user\",\"content\":\"Say hello.\"}],\"max_tokens\":5,\"stream\":true}" | head -c 3000
    echo
    echo "--- stream include_usage (last 600 bytes)"
    curl -s -m 10 -N -H "Authorization: Bearer $KEY" -H "$J" "$CHAT" \
      -d "{\"model\":\"$MODEL\",\"messages\":[{\"role\":\"user\",\"content\":\"Say hello.\"}],\"stream\":true,\"stream_options\":{\"include_usage\":true}}" | tail -c 600
    echo
    echo "--- stream max_tokens=1 on a long answer (last 600 bytes)"
    curl -s -m 10 -N -H "Authorization: Bearer $KEY" -H "$J" "$CHAT" \
      -d "{\"model\":\"$MODEL\",\"messages\":[{\"role\":\"user\",\"content\":\"Count from 1 to 200, one number per line, and write a long essay about each number.\"}],\"max_tokens\":1,\"stream\":true,\"stream_options\":{\"include_usage\":true}}" | tail -c 600
    echo
    ;;
  validation)
    for st in false true; do
      v() { show "$1 stream=$st" -H "Authorization: Bearer $KEY" -H "$J" "$CHAT" -d "$2"; }
      [ $st = false ] && show "not json" -H "Authorization: Bearer $KEY" -H "$J" "$CHAT" -d 'this is not json'
      [ $st = false ] && show "json array" -H "Authorization: Bearer $KEY" -H "$J" "$CHAT" -d '[1,2]'
      M="\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]"
      S="\"stream\":$st"
      v "no model" "{$M,$S}"
      v "no messages" "{\"model\":\"$MODEL\",$S}"
      v "model int" "{\"model\":123,$M,$S}"
      v "messages string" "{\"model\":\"$MODEL\",\"messages\":\"hi\",$S}"
      v "max_tokens string" "{\"model\":\"$MODEL\",$M,\"max_tokens\":\"ten\",$S}"
      v "max_tokens float" "{\"model\":\"$MODEL\",$M,\"max_tokens\":1.5,$S}"
      v "temperature string" "{\"model\":\"$MODEL\",$M,\"temperature\":\"hot\",$S}"
      v "stream string" "{\"model\":\"$MODEL\",$M,\"stream\":\"yes\"}"
      v "temperature 5" "{\"model\":\"$MODEL\",$M,\"temperature\":5,$S}"
      v "temperature -1" "{\"model\":\"$MODEL\",$M,\"temperature\":-1,$S}"
      v "messages empty" "{\"model\":\"$MODEL\",\"messages\":[],$S}"
      v "message no role" "{\"model\":\"$MODEL\",\"messages\":[{\"content\":\"hi\"}],$S}"
      v "message no content" "{\"model\":\"$MODEL\",\"messages\":[{\"role\":\"user\"}],$S}"
      v "message bad role" "{\"model\":\"$MODEL\",\"messages\":[{\"role\":\"wizard\",\"content\":\"hi\"}],$S}"
      v "max_tokens 0" "{\"model\":\"$MODEL\",$M,\"max_tokens\":0,$S}"
      v "max_tokens -1" "{\"model\":\"$MODEL\",$M,\"max_tokens\":-1,$S}"
      v "unknown model" "{\"model\":\"no-such-model-xyz\",$M,$S}"
    done
    ;;
  errors)
    show "unknown path" -H "Authorization: Bearer $KEY" "$BASE/no-such-path"
    show "unknown path POST" -H "Authorization: Bearer $KEY" -H "$J" -X POST "$BASE/no-such-path" -d '{}'
    show "GET chat" -H "Authorization: Bearer $KEY" "$CHAT"
    show "DELETE chat" -H "Authorization: Bearer $KEY" -X DELETE "$CHAT"
    show "POST models" -H "Authorization: Bearer $KEY" -H "$J" -X POST "$BASE/models" -d '{}'
    show "PUT models" -H "Authorization: Bearer $KEY" -X PUT "$BASE/models"
    ;;
  esac
done
rm -f /tmp/probe.h.$$ /tmp/probe.b.$$
