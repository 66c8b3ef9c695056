/* Documentation generated from the dispatch table: `hero actions`, `hero help
 * ACTION`, and the ACTIONS section of heroscript(5). */
#include <string.h>

#include "actions.h"

void hero_actions_list(FILE *out)
{
    for (size_t i = 0; i < hero_action_count; i++) {
        const hero_action_def_t *d = &hero_action_table[i];
        char full[64];
        snprintf(full, sizeof(full), "%s.%s", d->actor, d->name);
        fprintf(out, "%-28s %s%s\n", full, d->doc,
                d->flags & HERO_ACT_DIRECTIVE ? " [directive]"
                : d->start                    ? ""
                                              : " [validated only in this build]");
    }
}

static const char *default_text(const hero_param_def_t *p)
{
    if (p->required)
        return "required";
    if (p->def)
        return p->def[0] ? p->def : "''";
    return p->defdoc ? p->defdoc : "-";
}

static const hero_action_def_t *find_full(const char *name)
{
    const char *dot = strchr(name, '.');
    if (!dot)
        return hero_action_find("core", 4, name, strlen(name));
    return hero_action_find(name, (size_t)(dot - name), dot + 1, strlen(dot + 1));
}

int hero_action_help(FILE *out, const char *name)
{
    const hero_action_def_t *d = find_full(name);
    if (!d)
        return -1;
    fprintf(out, "%s.%s: %s\n", d->actor, d->name, d->doc);
    if (d->positional)
        fprintf(out, "A bare word gives %s: !!%s.%s VALUE\n", d->positional, d->actor, d->name);
    if (d->flags & HERO_ACT_DIRECTIVE)
        fputs("A directive: carried out while the playbook is loaded, before anything runs.\n", out);
    else if (!d->start)
        fputs("This build validates this action; running it is not implemented yet.\n", out);
    fputs("\n", out);
    fprintf(out, "  %-18s %-12s %-24s %s\n", "PARAMETER", "TYPE", "DEFAULT", "MEANING");
    for (size_t i = 0; i < d->nparams; i++) {
        const hero_param_def_t *p = &d->params[i];
        fprintf(out, "  %-18s %-12s %-24s %s\n", p->name, hero_type_name(p->type), default_text(p),
                p->doc);
    }
    return 0;
}

/* roff text: a leading '.' or '\'' would be a request, and '\' an escape */
static void roff_text(FILE *out, const char *s)
{
    if (*s == '.' || *s == '\'')
        fputs("\\&", out);
    for (; *s; s++) {
        if (*s == '\\')
            fputs("\\e", out);
        else if (*s == '-')
            fputs("\\-", out);
        else
            fputc(*s, out);
    }
}

void hero_actions_roff(FILE *out)
{
    fputs(".\\\" Generated from the dispatch table by `hero actions --roff`; do not edit.\n", out);
    const char *actor = "";
    for (size_t i = 0; i < hero_action_count; i++) {
        const hero_action_def_t *d = &hero_action_table[i];
        if (strcmp(actor, d->actor) != 0) {
            actor = d->actor;
            fprintf(out, ".SS Actor %s\n", actor);
        }
        fprintf(out, ".TP\n.B !!%s.%s\n", d->actor, d->name);
        roff_text(out, d->doc);
        fputs(d->flags & HERO_ACT_DIRECTIVE ? " (a directive, carried out while loading)"
              : d->start                    ? ""
                                            : " (validated only: this build cannot run it yet)",
              out);
        fputs(".\n", out);
        if (d->positional)
            fprintf(out, "A bare word gives \\fB%s\\fR.\n", d->positional);
        for (size_t k = 0; k < d->nparams; k++) {
            const hero_param_def_t *p = &d->params[k];
            fputs(".br\n", out);
            fprintf(out, "\\fB%s\\fR (%s, ", p->name, hero_type_name(p->type));
            roff_text(out, default_text(p));
            fputs("): ", out);
            roff_text(out, p->doc);
            fputs("\n", out);
        }
    }
}
