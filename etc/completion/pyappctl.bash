# bash completion for pyappctl.  Install as
# /usr/share/bash-completion/completions/pyappctl (or source it).
#
# Command names come from the daemon itself (list-commands), so they are
# whatever the running daemon offers, through the same -t target the line
# names.  Arguments complete as file names.
_pyappctl() {
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
    local target="" i
    case $prev in
        -f|--format)
            COMPREPLY=($(compgen -W "text json" -- "$cur"))
            return ;;
        -t|--target|-T|--timeout)
            COMPREPLY=()
            return ;;
    esac
    for ((i = 1; i < COMP_CWORD; i++)); do
        case ${COMP_WORDS[i]} in
            -t|--target) target=${COMP_WORDS[i+1]}; ((i++)) ;;
            -T|--timeout|-f|--format) ((i++)) ;;
            -*) ;;
            *)  # the command is already there: its arguments
                COMPREPLY=($(compgen -f -- "$cur"))
                return ;;
        esac
    done
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "-t --target -T --timeout -f --format --pretty
                                 -h --help -V --version" -- "$cur"))
        return
    fi
    local commands
    commands=$("${COMP_WORDS[0]}" ${target:+-t "$target"} -T 2 list-commands 2>/dev/null |
               awk 'NR > 1 && /^  [^ ]/ {print $1}')
    COMPREPLY=($(compgen -W "$commands top" -- "$cur"))
}
complete -F _pyappctl pyappctl
