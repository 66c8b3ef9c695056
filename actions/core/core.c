/* core.echo and core.sleep. */
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "actions/actions.h"
#include "core.h"
#include "runtime/sched.h"

int hero_core_echo_start(hero_task_t *t, hero_error_t *err)
{
    (void)err;
    char *msg = hero_arg_str(t->action, "msg");
    hero_task_printf(t, "%s\n", msg ? msg : "");
    free(msg);
    hero_task_done(t, 0, NULL);
    return 0;
}

int hero_core_fail_start(hero_task_t *t, hero_error_t *err)
{
    char *msg = hero_arg_str(t->action, "msg");
    hero_error_set(err, 0, "%s", msg ? msg : "failed");
    free(msg);
    return -1;
}

/* The timer lives in its own allocation because uv_close completes after the task
 * may be gone; it is freed in the close callback. */
static void sleep_closed(uv_handle_t *h)
{
    free(h);
}

static void sleep_fired(uv_timer_t *timer)
{
    hero_task_t *t = timer->data;
    t->state = NULL;
    t->cancel = NULL;
    uv_close((uv_handle_t *)timer, sleep_closed);
    hero_task_done(t, 0, NULL);
}

static void sleep_cancel(hero_task_t *t)
{
    uv_timer_t *timer = t->state;
    if (!timer)
        return;
    t->state = NULL;
    t->cancel = NULL;
    uv_timer_stop(timer);
    uv_close((uv_handle_t *)timer, sleep_closed);
    hero_error_t e = HERO_ERROR_INIT;
    hero_error_set(&e, 0, "interrupted");
    hero_task_done(t, -1, &e);
}

int hero_core_sleep_start(hero_task_t *t, hero_error_t *err)
{
    (void)err;
    int64_t ms = hero_arg_duration_ms(t->action, "duration");
    uv_timer_t *timer = hero_xmalloc(sizeof(*timer));
    uv_timer_init(t->loop, timer);
    timer->data = t;
    t->state = timer;
    t->cancel = sleep_cancel;
    uv_timer_start(timer, sleep_fired, (uint64_t)(ms < 0 ? 0 : ms), 0);
    return 0;
}
