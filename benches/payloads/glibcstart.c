/* glibcstart: a static glibc program whose main returns at once: an exec plus glibc's start-up
 * (CPU feature and cache detection, TLS, stdio), the part of every glibc process's start that no
 * launcher can avoid. Against nolibc (no C library), it says what that start-up costs here.
 * Exits with status 0. */
int main(void)
{
    return 0;
}
