/* Cross-parameter rules of the heropods actions that one schema row cannot say. */
#include "actions/actions.h"
#include "heropods.h"

void hero_heropods_check_exec(const hs_action_t *a, hs_diags_t *d)
{
    const hs_param_t *cmd = hero_arg(a, "cmd"), *args = hero_arg(a, "args");
    if (!cmd && !args)
        hs_diag_add(d, HS_ERROR, a->src, a->off,
                    "container_exec needs cmd:'...' (run by /bin/sh -c inside the container) or "
                    "args:[...] (run as is, no shell)");
    else if (cmd && args)
        hs_diag_add(d, HS_ERROR, a->src, args->key.off,
                    "give cmd or args, not both: cmd runs through /bin/sh -c inside the container, "
                    "args runs as is");
}

void hero_heropods_check_new(const hs_action_t *a, hs_diags_t *d)
{
    const hs_param_t *image = hero_arg(a, "image");
    bool custom = image && image->form == HS_VAL_SCALAR && hs_item_eq(&hs_param_items(image)[0], "custom");
    const hs_param_t *cname = hero_arg(a, "custom_image_name"), *url = hero_arg(a, "docker_url");
    if (custom) {
        if (!cname)
            hs_diag_add(d, HS_ERROR, a->src, image->key.off,
                        "image:'custom' needs custom_image_name:'NAME' (and docker_url: to pull it)");
    } else {
        if (cname)
            hs_diag_add(d, HS_ERROR, a->src, cname->key.off,
                        "custom_image_name applies only with image:'custom'");
        if (url)
            hs_diag_add(d, HS_ERROR, a->src, url->key.off,
                        "docker_url applies only with image:'custom' (or give the reference "
                        "directly: image:'docker.io/library/alpine:3.20')");
    }
}

void hero_heropods_check_configure(const hs_action_t *a, hs_diags_t *d)
{
    const hs_param_t *gw = hero_arg(a, "gateway_ip"), *sn = hero_arg(a, "subnet");
    if (!gw || gw->form != HS_VAL_SCALAR)
        return;
    uint32_t net = 0x0a0a0000, addr;
    int len = 24;
    const hs_item_t *g = &hs_param_items(gw)[0];
    if (sn && sn->form == HS_VAL_SCALAR) {
        const hs_item_t *s = &hs_param_items(sn)[0];
        if (hero_conv_ipv4_prefix(s->p, s->len, &net, &len))
            return; /* reported by the type check */
    }
    if (hero_conv_ipv4(g->p, g->len, &addr))
        return;
    uint32_t mask = len == 0 ? 0 : ~(uint32_t)0 << (32 - len);
    if ((addr & mask) != net)
        hs_diag_add(d, HS_ERROR, a->src, g->off, "gateway_ip %.*s is not inside the subnet %u.%u.%u.%u/%d%s",
                    (int)g->len, g->p, net >> 24, (net >> 16) & 255, (net >> 8) & 255, net & 255,
                    len, sn ? "" : " (the default)");
    else if (addr == net || (len < 31 && addr == (net | ~mask)))
        hs_diag_add(d, HS_ERROR, a->src, g->off,
                    "gateway_ip %.*s is the subnet's %s address, not a host", (int)g->len, g->p,
                    addr == net ? "network" : "broadcast");
}
