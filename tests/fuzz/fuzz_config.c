/* modelgate — fuzz target: the YAML configuration loader.
 *
 * The input is written to an anonymous memory file and loaded by path, the
 * way `modelgate check` does; any outcome but a crash, leak or sanitizer
 * report is fine (errors are the expected result for most inputs).
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#include "config.h"

#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd = memfd_create("fuzz-config", MFD_CLOEXEC);
    if (fd < 0)
        return 0;
    if (write(fd, data, size) == (ssize_t)size) {
        char path[64];
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        mg_buf errs = {0};
        mg_config *cfg = mg_config_load(path, &errs);
        mg_config_free(cfg);
        mg_buf_free(&errs);
    }
    close(fd);
    return 0;
}
