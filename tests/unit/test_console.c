/* modelgate — unit tests for the web console's file table (gateway/console.c):
 * which request paths name a file, content types, and loading a directory.
 * SPDX-License-Identifier: Apache-2.0
 */
#include "t.h"

#include "console.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

T_TEST(paths_to_file_names)
{
    char n[64];
    T_CHECK(mg_console_file_name("/admin/", n, sizeof(n)));
    T_EQ_STR(n, "index.html");
    T_CHECK(mg_console_file_name("/admin/app.js", n, sizeof(n)));
    T_EQ_STR(n, "app.js");
    T_CHECK(!mg_console_file_name("/admin/../etc/passwd", n, sizeof(n)));
    T_CHECK(!mg_console_file_name("/admin/v1/keys", n, sizeof(n)));
    T_CHECK(!mg_console_file_name("/admin/.env", n, sizeof(n)));
    T_CHECK(!mg_console_file_name("/admin/a%2fb", n, sizeof(n)));
    T_CHECK(!mg_console_file_name("/other/app.js", n, sizeof(n)));
    T_CHECK(!mg_console_file_name("/admin/a-very-long-name.js", n, 8));
}

T_TEST(content_types)
{
    T_EQ_STR(mg_console_content_type("index.html"), "text/html; charset=utf-8");
    T_EQ_STR(mg_console_content_type("app.js"), "text/javascript; charset=utf-8");
    T_EQ_STR(mg_console_content_type("console.css"), "text/css; charset=utf-8");
    T_EQ_STR(mg_console_content_type("logo.svg"), "image/svg+xml");
    T_CHECK(mg_console_content_type("notes.md") == NULL);
    T_CHECK(mg_console_content_type(".js") == NULL);
}

static void put(const char *dir, const char *name, const char *text)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    fputs(text, f);
    fclose(f);
}

T_TEST(loads_served_kinds_only_and_fails_on_a_bad_named_dir)
{
    char dir[] = "/tmp/mg-console-XXXXXX";
    T_CHECK(mkdtemp(dir) != NULL);
    put(dir, "index.html", "<!doctype html>");
    put(dir, "app.js", "export {};");
    put(dir, "README.md", "not served");
    put(dir, ".hidden.js", "not served");
    setenv("MODELGATE_CONSOLE_DIR", dir, 1);
    mg_buf notes = {0};
    T_EQ_INT(mg_console_load(&notes), MG_OK);
    T_EQ_INT((int)mg_console_nfiles(), 2);
    T_EQ_STR(mg_console_dir(), dir);
    mg_console_unload();
    T_CHECK(mg_console_dir() == NULL);

    setenv("MODELGATE_CONSOLE_DIR", "/nonexistent/mg-console", 1);
    T_EQ_INT(mg_console_load(&notes), MG_ERR);
    T_CHECK(notes.p && strstr(notes.p, "MODELGATE_CONSOLE_DIR") != NULL);
    T_EQ_INT((int)mg_console_nfiles(), 0);
    mg_buf_free(&notes);
    unsetenv("MODELGATE_CONSOLE_DIR");
    char p[512];
    for (const char *const *n = (const char *const[]){"index.html", "app.js", "README.md", ".hidden.js", NULL}; *n; n++) {
        snprintf(p, sizeof(p), "%s/%s", dir, *n);
        unlink(p);
    }
    rmdir(dir);
}

T_MAIN("console", T_CASE(paths_to_file_names), T_CASE(content_types),
       T_CASE(loads_served_kinds_only_and_fails_on_a_bad_named_dir))
