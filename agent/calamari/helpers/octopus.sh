# Helper functions for bash steps; sourced before the user's script.
# The placeholder in get_octopusvariable becomes one case arm per variable (base64 name -> value;
# sensitive ones -> an index into __octopus_secrets, which is read from an inherited pipe, one
# base64 value a line, so that no secret is in a file), and __SECRETS_FD__ that pipe's number.
__octopus_secrets=()
while IFS= read -r __octopus_line; do __octopus_secrets+=("$__octopus_line"); done <&__SECRETS_FD__
exec __SECRETS_FD__<&-
unset __octopus_line
__octopus_encode() { printf '%s' "$1" | base64 | tr -d '\n'; }
__octopus_message() { printf '##octopus[%s]\n' "$*"; }
get_octopusvariable() {
    # not traced under the script's `set -x`: the trace would show the values
    { local __octopus_trace=$-; set +x; } 2>/dev/null
    local key
    key=$(__octopus_encode "$1")
    case "$key" in
__VARIABLE_CASES__
        *) echo "" ;;
    esac
    case "$__octopus_trace" in *x*) set -x ;; esac
}
set_octopusvariable() {
    local name="$1" value="$2" sensitive=""
    if [ -z "$name" ]; then echo "set_octopusvariable: a name is required" >&2; return 1; fi
    if [ "$3" = "-sensitive" ]; then sensitive=" sensitive='$(__octopus_encode True)'"; fi
    __octopus_message "setVariable name='$(__octopus_encode "$name")'" \
        "value='$(__octopus_encode "$value")'$sensitive"
}
new_octopusartifact() {
    local path="$1" name="${2:-$(basename "$1")}"
    if [ ! -e "$path" ]; then echo "new_octopusartifact: there is no file $path" >&2; return 1; fi
    path=$(cd "$(dirname "$path")" && pwd)/$(basename "$path")
    __octopus_message "createArtifact path='$(__octopus_encode "$path")' name='$(__octopus_encode "$name")' length='$(__octopus_encode "$(wc -c < "$path" | tr -d ' ')")'"
}
update_progress() {
    __octopus_message "progress percentage='$(__octopus_encode "$1")' message='$(__octopus_encode "${2:-}")'"
}
fail_step() {
    if [ -n "${1:-}" ]; then __octopus_message "resultMessage message='$(__octopus_encode "$1")'"; fi
    exit 1
}
