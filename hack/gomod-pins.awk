# Prints the replace and exclude directives of a go.mod (single lines and blocks), except replaces
# that point at local paths. hack/tools.sh appends them to a wrapper module that requires the module.
/^(replace|exclude)[ \t]*\($/ { block = 1; print; next }
block && /^\)/ { block = 0; print; next }
(block || /^(replace|exclude)[ \t]/) && !/=>[ \t]*\.\.?\// { print }
