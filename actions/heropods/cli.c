/* `hero pods`: containers and images from any later process, over the state store. */
#include <stdio.h>

#include "heropods.h"

int hero_heropods_cli(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fputs("hero pods: not written yet\n", stderr);
    return 2;
}
